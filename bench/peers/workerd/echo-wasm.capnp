# workerd config of the `workerd-wasm` peer. peers.py builds echo.wasm from echo.wat, then runs:
#   workerd serve echo-wasm.capnp --socket-addr http=127.0.0.1:PORT
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [(name = "echo", worker = .echoWorker)],
  sockets = [(name = "http", address = "127.0.0.1:8787", http = (), service = "echo")],
);

const echoWorker :Workerd.Worker = (
  modules = [
    (name = "worker", esModule = embed "echo-wasm.mjs"),
    # Compiled once when workerd loads the config; the worker instantiates it per request.
    (name = "echo.wasm", wasm = embed "echo.wasm"),
  ],
  compatibilityDate = "2025-01-01",
);
