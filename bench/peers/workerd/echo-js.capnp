# workerd config of the `workerd-js` peer. peers.py runs:
#   workerd serve echo-js.capnp --socket-addr http=127.0.0.1:PORT
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [(name = "echo", worker = .echoWorker)],
  sockets = [(name = "http", address = "127.0.0.1:8787", http = (), service = "echo")],
);

const echoWorker :Workerd.Worker = (
  modules = [(name = "worker", esModule = embed "echo-js.mjs")],
  compatibilityDate = "2025-01-01",
);
