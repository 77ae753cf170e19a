"""The Flower App that the deployment test runs on loopback (a SuperLink and four SuperNodes).

The test copies this module and ``flower_app.py`` into an app folder with a
``pyproject.toml`` naming the components below; ``flwr run`` packs that folder into a FAB.
"""

from flower_app import make_client_app, make_server_app

NODES, ROUNDS = 4, 5

client_app = make_client_app(ratio=0.1, values="int8")
# The broadcast is compressed too: each SuperNode keeps its copy of the model in its context.
server_app = make_server_app(True, nodes=NODES, rounds=ROUNDS, downlink={"ratio": 0.1, "values": "int8"})
