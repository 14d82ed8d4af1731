// Seed 002's "Using Browser Console" example, verbatim but for the host and the conversation
// id. In a console the send lines are typed once the socket is open; here they run on open.
// Usage: node raw_seed_002.js WS_BASE TOKEN CONVERSATION_ID
'use strict';
const { logs, finish, when } = require('./raw_harness');
const [base, tokenArg, conversationIdArg] = process.argv.slice(2);
global.localStorage = { getItem: () => tokenArg };

// ---- seed code begins ----
// Open browser console on your app
// First, get your JWT token (after logging in)
const token = localStorage.getItem('access_token');

// Connect with token
const ws = new WebSocket(`${base}/ws/chat/${conversationIdArg}/?token=${token}`);

ws.onopen = () => console.log('Connected');
ws.onmessage = (e) => console.log('Received:', JSON.parse(e.data));
ws.onerror = (e) => console.error('Error:', e);
// ---- seed code pauses: the console user waits for 'Connected' ----

when(() => logs.some(l => l.args[0] === 'Connected'), () => {
// ---- seed code resumes ----
// Send a message
ws.send(JSON.stringify({
  type: 'chat_message',
  content: 'Hello from console!'
}));

// Send typing indicator
ws.send(JSON.stringify({
  type: 'typing_indicator',
  is_typing: true
}));
// ---- seed code ends ----
  const received = () => logs.filter(l => l.args[0] === 'Received:').map(l => l.args[1]);
  when(() => received().some(f => f.type === 'chat_message'), () => finish({ received: received() }));
});
