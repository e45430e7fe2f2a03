// A loopback collector for the benchmark, in its own process so that it costs the measured
// process nothing. `accept`: answers every request 200 `{}`; `blackhole`: accepts connections and
// never reads or answers. Prints its URL, then runs until killed.
import * as net from "node:net";

const mode = process.argv[2] ?? "accept";
const server = net.createServer((socket) => {
  socket.on("error", () => {});
  if (mode === "blackhole") {
    socket.pause();
    return;
  }
  let buf = Buffer.alloc(0);
  socket.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const head = buf.indexOf("\r\n\r\n");
      if (head < 0) return;
      const len = Number(/content-length:\s*(\d+)/i.exec(buf.subarray(0, head).toString())?.[1] ?? 0);
      if (buf.length < head + 4 + len) return;
      buf = buf.subarray(head + 4 + len);
      socket.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    }
  });
});
server.listen(0, "127.0.0.1", () => process.stdout.write(`http://127.0.0.1:${server.address().port}\n`));
