// Seed 001's ChatManager, verbatim but for the host; the UI methods it leaves to the app
// are filled in to record what they are given.
// Usage: node raw_seed_001.js WS_BASE TOKEN CONVERSATION_ID
'use strict';
const { finish, when } = require('./raw_harness');
const [base, tokenArg, conversationIdArg] = process.argv.slice(2);

// ---- seed code begins ----
class ChatManager {
    constructor(token) {
        this.token = token;
        this.chatSocket = null;
        this.conversationSocket = null;
    }
    
    connectToConversationList() {
        this.conversationSocket = new WebSocket(
            `${base}/ws/conversations/?token=${this.token}`
        );
        
        this.conversationSocket.onmessage = (e) => {
            const data = JSON.parse(e.data);
            this.handleConversationUpdate(data);
        };
    }
    
    connectToChat(conversationId) {
        if (this.chatSocket) {
            this.chatSocket.close();
        }
        
        this.chatSocket = new WebSocket(
            `${base}/ws/chat/${conversationId}/?token=${this.token}`
        );
        
        this.chatSocket.onmessage = (e) => {
            const data = JSON.parse(e.data);
            this.handleChatMessage(data);
        };
    }
    
    sendMessage(content) {
        if (this.chatSocket) {
            this.chatSocket.send(JSON.stringify({
                'type': 'chat_message',
                'content': content
            }));
        }
    }
    
    handleConversationUpdate(data) {
        // Update UI with new conversation list
        if (data.type === 'conversations_list') {
            this.updateConversationList(data.conversations);
        }
    }
    
    handleChatMessage(data) {
        // Update UI with new message
        if (data.type === 'chat_message') {
            this.addMessageToChat(data.message);
        }
    }
}
// ---- seed code ends ----

const lists = [];
const messages = [];
ChatManager.prototype.updateConversationList = function (conversations) { lists.push(conversations); };
ChatManager.prototype.addMessageToChat = function (message) { messages.push(message); };

const manager = new ChatManager(tokenArg);
manager.connectToConversationList();
manager.connectToChat(conversationIdArg);
let opened = 0;
manager.conversationSocket.addEventListener('open', () => {
  opened += 1;
  // The seed's "Get Conversations" frame.
  manager.conversationSocket.send(JSON.stringify({ 'type': 'get_conversations' }));
});
manager.chatSocket.addEventListener('open', () => { opened += 1; });
when(() => opened === 2, () => {
  manager.sendMessage('Hello from ChatManager');
  when(() => messages.length > 0 && lists.length > 0, () => {
    manager.conversationSocket.send(JSON.stringify({ 'type': 'refresh_conversations' }));
    when(() => lists.length > 1, () => finish({ lists, messages }));
  });
});
