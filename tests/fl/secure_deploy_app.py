"""The Flower App that the secure-aggregation deployment test runs on loopback (a SuperLink and
ten SuperNodes): ``secure_app``'s SecAgg+ client and server with the shared-support compressor,
two values packed into each SecAgg+ field element."""

from secure_app import make_client_app, make_server_app

NODES, ROUNDS = 10, 4

client_app = make_client_app()
server_app = make_server_app("support-packed", nodes=NODES, rounds=ROUNDS)
