// The official Node tus server as the benchmark runs it: @tus/server with
// @tus/file-store, stock options, on 127.0.0.1.
//   node tus_server.mjs PORT DIRECTORY BACKLOG
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const [port, directory, backlog] = process.argv.slice(2);
const server = new Server({
  path: "/files",
  datastore: new FileStore({ directory }),
});
server.listen({ host: "127.0.0.1", port: Number(port), backlog: Number(backlog) }, () => {
  console.log(`@tus/server listening on 127.0.0.1:${port}`);
});
