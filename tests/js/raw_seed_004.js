// Seed 004's "JavaScript WebSocket Client", verbatim but for the host, the conversation id
// and the message ids to mark read. The seed sends right after `new WebSocket`, which throws
// in a browser too (the socket is still CONNECTING); here the sends run on open.
// Usage: node raw_seed_004.js WS_BASE TOKEN CONVERSATION_ID MESSAGE_IDS_JSON
'use strict';
const { logs, finish, when } = require('./raw_harness');
const [base, tokenArg, conversationIdArg, idsArg] = process.argv.slice(2);
const readIds = JSON.parse(idsArg);

// ---- seed code begins ----
// Connect to chat
const token = tokenArg;
const conversationId = Number(conversationIdArg);
const ws = new WebSocket(`${base}/ws/chat/${conversationId}/?token=${token}`);

// Connection opened
ws.onopen = () => {
  console.log('Connected to chat');
};

// Receive messages
ws.onmessage = (event) => {
  const data = JSON.parse(event.data);
  
  switch(data.type) {
    case 'chat_message':
      console.log('New message:', data.content);
      break;
    case 'typing_indicator':
      console.log(`${data.user_name} is typing...`);
      break;
    case 'messages_read':
      console.log('Messages marked as read');
      break;
  }
};
// ---- seed code pauses until the socket is open ----

when(() => logs.some(l => l.args[0] === 'Connected to chat'), () => {
// ---- seed code resumes ----
// Send message
ws.send(JSON.stringify({
  type: 'chat_message',
  content: 'Hello!'
}));

// Send typing indicator
ws.send(JSON.stringify({
  type: 'typing_indicator',
  is_typing: true
}));

// Mark messages as read
ws.send(JSON.stringify({
  type: 'message_read',
  message_ids: readIds
}));
// ---- seed code ends ----
  when(() => logs.some(l => l.args[0] === 'Messages marked as read') &&
             logs.some(l => l.args[0] === 'New message:') &&
             logs.some(l => String(l.args[0]).endsWith(' is typing...')), () => finish({}));
});
