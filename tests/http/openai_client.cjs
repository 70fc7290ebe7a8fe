// openai_client.cjs — certad's HTTP API through the official `openai` npm package, as a user
// of vLLM/SGLang would call it.  Run by tests/integration/test_http.c:
//   node openai_client.cjs NPM_DIR BASE_URL API_KEY MODEL PROBLEM_FILE
// Prints one line per check and "openai-client: N passed, 0 failed"; exits 1 at the first
// failed check.
'use strict';
const fs = require('fs');
const path = require('path');

const [npmDir, baseURL, apiKey, model, problemFile] = process.argv.slice(2);
const mod = require(path.join(path.resolve(npmDir), 'node_modules', 'openai'));
const OpenAI = mod.OpenAI || mod.default || mod;
const problem = fs.readFileSync(problemFile, 'utf8');
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });
let passed = 0;

function check(cond, what, detail) {
	if (!cond) {
		console.log(`FAIL: ${what}${detail !== undefined ? ': ' + JSON.stringify(detail) : ''}`);
		console.log(`openai-client: ${passed} passed, 1 failed`);
		process.exit(1);
	}
	passed++;
	console.log(`ok: ${what}`);
}

// An API error from the SDK, or null when the call succeeded.
async function apiError(fn) {
	try {
		await fn();
		return null;
	} catch (e) {
		return e;
	}
}

async function main() {
	const user = [{ role: 'user', content: problem }];

	// Models: what the replay worker serves.
	const models = await client.models.list();
	const ids = models.data.map((m) => m.id);
	check(ids.includes(model), 'models.list() names the worker\'s model', ids);

	// Chat, no streaming.
	const r = await client.chat.completions.create({ model, messages: user, max_tokens: 4096 });
	check(r.object === 'chat.completion', 'object is chat.completion', r.object);
	check(r.choices.length === 1, 'one choice', r.choices.length);
	const msg = r.choices[0].message;
	check(msg.role === 'assistant' && typeof msg.content === 'string' && msg.content.length > 0,
	    'the answer is in message.content', msg.content);
	check(typeof msg.reasoning_content === 'string' && msg.reasoning_content.length > 100,
	    'the reasoning is in message.reasoning_content', (msg.reasoning_content || '').length);
	check(['stop', 'length'].includes(r.choices[0].finish_reason), 'finish_reason',
	    r.choices[0].finish_reason);
	check(r.usage.completion_tokens_details.reasoning_tokens > 0 &&
	    r.usage.completion_tokens >= r.usage.completion_tokens_details.reasoning_tokens &&
	    r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens,
	    'usage with reasoning_tokens', r.usage);
	check(r.certa && /^p-/.test(r.certa.program_id) && r.id === 'chatcmpl-' + r.certa.program_id,
	    'certa.program_id names the program', r.certa);
	check(['certain', 'natural_end', 'budget', 'unpromising', 'deadline'].includes(r.certa.reason),
	    'certa.reason', r.certa.reason);
	console.log(`program: ${r.certa.program_id}`);

	// Chat, streaming: reasoning deltas, then the answer, then finish_reason; [DONE] ends
	// the iterator.
	const stream = await client.chat.completions.create({
		model, messages: user, stream: true, stream_options: { include_usage: true },
	});
	let reasoning = '', content = '', finish = null, chunks = 0, progress = 0, usage = null;
	const objects = new Set();
	for await (const chunk of stream) {
		chunks++;
		objects.add(chunk.object);
		if (chunk.certa && typeof chunk.certa.certaindex === 'number')
			progress++;
		if (chunk.usage)
			usage = chunk.usage;
		for (const c of chunk.choices) {
			if (c.delta.reasoning_content)
				reasoning += c.delta.reasoning_content;
			if (c.delta.content)
				content += c.delta.content;
			if (c.finish_reason)
				finish = c.finish_reason;
		}
	}
	check(chunks > 2 && objects.size === 1 && objects.has('chat.completion.chunk'),
	    'stream: chat.completion.chunk objects', [chunks, [...objects]]);
	check(reasoning.length > 100, 'stream: reasoning_content deltas', reasoning.length);
	check(content.length > 0, 'stream: the answer in content deltas', content);
	check(finish === 'stop' || finish === 'length', 'stream: finish_reason', finish);
	check(progress > 0, 'stream: certa progress (certaindex) in chunks', progress);
	check(usage && usage.completion_tokens_details.reasoning_tokens > 0,
	    'stream: usage chunk (stream_options.include_usage)', usage);

	// n = 3: sc with three chains, three choices.
	const r3 = await client.chat.completions.create({ model, messages: user, n: 3 });
	check(r3.choices.length === 3 && r3.choices.every((c, i) => c.index === i),
	    'n=3: three choices', r3.choices.map((c) => c.index));
	check(r3.choices.every((c) => c.message.content.length > 0), 'n=3: every choice answers');
	check(r3.certa.chains === 3, 'n=3: three chains', r3.certa);

	// Text completions.
	const rc = await client.completions.create({ model, prompt: problem, max_tokens: 4096 });
	check(rc.object === 'text_completion' && rc.choices[0].text.length > 0,
	    'completions: the answer in choices[0].text', rc.choices[0]);

	// Errors: the SDK's own classes, from OpenAI's error shape and the HTTP status.
	const bad = new OpenAI({ baseURL, apiKey: 'certa_nope_0000', maxRetries: 0 });
	let e = await apiError(() => bad.chat.completions.create({ model, messages: user }));
	check(e instanceof OpenAI.AuthenticationError && e.status === 401, 'bad key: 401',
	    e && e.status);
	e = await apiError(() => client.chat.completions.create({ model: 'no-such-model',
	    messages: user }));
	check(e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'model_not_found',
	    'bad model: 404 model_not_found', e && [e.status, e.code]);
	e = await apiError(() => client.chat.completions.create({ model, messages: user,
	    temperature: 'hot' }));
	check(e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'temperature',
	    'bad param: 400 naming temperature', e && [e.status, e.param, e.message]);
	e = await apiError(() => client.chat.completions.create({ model, messages: user, n: 0 }));
	check(e instanceof OpenAI.BadRequestError && e.param === 'n', 'n=0: 400 naming n',
	    e && [e.status, e.param]);
	e = await apiError(() => client.chat.completions.create({ model,
	    messages: [...user, { role: 'assistant', content: 'x' }] }));
	check(e instanceof OpenAI.BadRequestError && e.param === 'messages[1].role',
	    'assistant turn: 400 naming messages[1].role', e && [e.status, e.param]);

	console.log(`openai-client: ${passed} passed, 0 failed`);
}

main().catch((err) => {
	console.log(`FAIL: ${err && err.stack ? err.stack : err}`);
	process.exit(1);
});
