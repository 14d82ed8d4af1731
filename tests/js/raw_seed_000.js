// Seed 000's "Implementation Example (JavaScript)", verbatim but for the URL and ids.
// Usage: node raw_seed_000.js WS_BASE CONVERSATION_ID DEVICE_ID
'use strict';
const { logs, finish, when } = require('./raw_harness');
const [base, conversationIdArg, deviceIdArg] = process.argv.slice(2);

const displayed = [];
const statuses = [];
const typing = [];
function displayMessage(message) { displayed.push(message); }
function updateMessageStatus(id, status) { statuses.push([id, status]); }
function showTypingIndicator(who, isTyping) { typing.push([who, isTyping]); }

// ---- seed code begins ----
// Connect to WebSocket
const conversationId = Number(conversationIdArg);
const deviceId = deviceIdArg;
const ws = new WebSocket(`${base}/ws/mobile/chat/${conversationId}/?device_id=${deviceId}`);

// Connection opened
ws.onopen = function(event) {
  console.log('WebSocket connected');
};

// Listen for messages
ws.onmessage = function(event) {
  const data = JSON.parse(event.data);
  
  switch(data.type) {
    case 'connection_established':
      console.log('Connection established:', data);
      break;
      
    case 'chat_message':
      console.log('New message:', data.message);
      // Display message in UI
      displayMessage(data.message);
      break;
      
    case 'message_status_update':
      console.log('Status update:', data);
      // Update message status in UI
      updateMessageStatus(data.message_id, data.status);
      break;
      
    case 'typing_indicator':
      console.log('User typing:', data);
      // Show typing indicator
      showTypingIndicator(data.device_id || data.user_id, data.is_typing);
      break;
      
    case 'error':
      console.error('Error:', data.message);
      break;
      
    default:
      console.log('Unknown message type:', data.type);
  }
};

// Send a message
function sendMessage(content) {
  ws.send(JSON.stringify({
    type: 'chat_message',
    content: content,
    message_type: 'text',
    is_urgent: false,
    metadata: {}
  }));
}

// Send typing indicator
function sendTypingIndicator(isTyping) {
  ws.send(JSON.stringify({
    type: 'typing_indicator',
    is_typing: isTyping
  }));
}

// Mark messages as read
function markAsRead(messageIds) {
  ws.send(JSON.stringify({
    type: 'read_receipt',
    message_ids: messageIds
  }));
}

// Connection closed
ws.onclose = function(event) {
  console.log('WebSocket closed:', event.code, event.reason);
  // Implement reconnection logic if needed
};

// Connection error
ws.onerror = function(error) {
  console.error('WebSocket error:', error);
};
// ---- seed code ends ----

const established = () => logs.some(l => l.args[0] === 'Connection established:');
when(established, () => {
  sendTypingIndicator(true);
  sendMessage('Hello from the seed 000 example');
  sendMessage('');  // the seed's error case
  const reply = () => displayed.find(m => m.sender_type !== 'mobile');
  when(() => reply() && logs.some(l => l.args[0] === 'Error:'), () => {
    markAsRead([reply().message_id]);
    sendTypingIndicator(false);
    when(() => statuses.length > 0 && logs.some(l => l.args[0] === 'Unknown message type:' &&
                         l.args[1] === 'read_receipt'), () => {
      finish({ displayed, statuses, typing });
    });
  });
});
