"""certa_client against a real certad and replay worker (started by
tests/integration/test_python_client.c, which passes the address and a recorded problem).

Usage: CERTA_TARGET=127.0.0.1:PORT CERTA_PROBLEM='...' python3 -m unittest test_client
"""

import os
import unittest

import grpc

import certa_client
from certa_client import CertaError, Client, common_pb2

TARGET = os.environ.get("CERTA_TARGET", "127.0.0.1:7700")
PROBLEM = os.environ.get("CERTA_PROBLEM", "What is 2+2?")
API_KEY = os.environ.get("CERTA_API_KEY") or None


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.c = Client(TARGET, api_key=API_KEY, timeout=30)

    def tearDown(self):
        self.c.close()

    def run_program(self, **kw):
        return list(self.c.submit(PROBLEM, timeout=120, **kw))

    def test_submit_get_watch_list(self):
        events = self.run_program(idempotency_key="py-1", algorithm="cot")
        self.assertEqual(events[0].kind, "accepted")
        self.assertEqual(events[0].seq, 1)
        seqs = [e.seq for e in events]
        self.assertEqual(seqs, sorted(set(seqs)), "seq strictly increasing")
        fin = certa_client.final(events)
        self.assertIsNotNone(fin)
        self.assertFalse(fin.failed)
        self.assertTrue(fin.answer)
        pid = events[0].program_id

        p = self.c.get(pid)
        self.assertEqual(p.state, common_pb2.PROGRAM_STATE_FINISHED)
        self.assertEqual(p.result.answer, fin.answer)

        watched = list(self.c.watch(pid, timeout=30))
        self.assertEqual([(e.kind, e.seq) for e in watched], [("finished", fin.seq)])

        retry = self.run_program(idempotency_key="py-1", algorithm="cot")
        self.assertTrue(retry[0].message.accepted.duplicate)
        self.assertEqual([e.seq for e in retry], [1, fin.seq])

        self.assertIn(pid, [q.id for q in self.c.list()])
        self.assertIn(pid, [q.id for q in self.c.list("finished", page_size=1)])

    def test_cancel(self):
        stream = self.c.submit(PROBLEM, algorithm="sc", n=2, timeout=120)
        first = next(stream)
        self.assertEqual(first.kind, "accepted")
        self.assertEqual(self.c.cancel(first.program_id), common_pb2.PROGRAM_STATE_CANCELLED)
        rest = list(stream)
        fin = certa_client.final(rest)
        self.assertIsNotNone(fin)
        self.assertEqual(fin.message.finished.result.reason, common_pb2.FINISH_REASON_CANCELLED)
        self.assertTrue(fin.message.finished.result.low_confidence)

    def test_models(self):
        models = self.c.list_models()
        self.assertTrue(models)
        self.assertTrue(all(m.workers >= 1 and m.max_chains >= 1 for m in models))
        events = self.run_program(model=models[0].name, token_budget=64)
        self.assertIsNotNone(certa_client.final(events))

    def test_errors(self):
        with self.assertRaises(CertaError) as cm:
            self.run_program(temperature=-1.0)
        self.assertEqual(cm.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("program.sampling.temperature", cm.exception.message)
        self.assertIn(b"type.googleapis.com/google.rpc.BadRequest", cm.exception.details_bin)
        with self.assertRaises(CertaError) as cm:
            self.c.get("p-0000000000000000ab")
        self.assertEqual(cm.exception.code, grpc.StatusCode.NOT_FOUND)
        # The raw stubs are there too: a page token that no List reply gave.
        with self.assertRaises(grpc.RpcError) as raw:
            self.c.reasoning.List(certa_client.reasoning_pb2.ListRequest(page_token="garbage"),
                                  metadata=self.c._md, timeout=30)
        self.assertEqual(raw.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


if __name__ == "__main__":
    unittest.main()
