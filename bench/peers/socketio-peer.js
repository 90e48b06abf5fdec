// Socket.IO 4 as a benchmark peer: `node socketio-peer.js`. WebSocket transport only.
// `echo` events come back to the sender; `publish` events go to everyone in the room
// the client joined with `join`; `ask` is answered through its acknowledgement (what a
// client's `emitWithAck` waits for) with what it asked. Prints `listening on 127.0.0.1:PORT` once bound.
const http = require('http');
const { Server } = require('socket.io');
const server = http.createServer();
const io = new Server(server, { transports: ['websocket'], perMessageDeflate: false });
io.on('connection', (socket) => {
  socket.on('echo', (body) => socket.emit('echo', body));
  socket.on('join', (room) => { socket.join(room); socket.emit('joined', room); });
  socket.on('publish', (room, body) => io.to(room).emit('message', body));
  socket.on('ask', (body, ack) => ack(body));
});
server.listen(0, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${server.address().port}`));
