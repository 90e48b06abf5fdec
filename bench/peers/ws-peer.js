// Node's `ws` as a benchmark peer: `node ws-peer.js echo|broadcast`.
// Prints `listening on 127.0.0.1:PORT` once bound.
const { WebSocketServer } = require('ws');
const mode = process.argv[2] || 'echo';
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
wss.on('listening', () => console.log(`listening on 127.0.0.1:${wss.address().port}`));
wss.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => {
    if (mode === 'broadcast') {
      for (const client of wss.clients) client.send(data, { binary: isBinary });
    } else {
      socket.send(data, { binary: isBinary });
    }
  });
});
