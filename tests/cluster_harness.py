"""Two gateway nodes sharing one store, and a client with an IKE SA to the first: the set-up of
the cluster hand-off tests (RFC 7791 §1: an SA handed to another node of a gateway cluster)."""

from __future__ import annotations

import dataclasses

from engine_harness import RESPONDER_HOST, Network, counter_random, drain, pair
from store_fixtures import StoreFactory

from ikecore.endpoint import IkeEndpoint
from ikecore.session import IkeSession
from ikecore.store import MemoryStore, SaStore

NODE_B_HOST = "198.51.100.2"


@dataclasses.dataclass
class Cluster:
    client: IkeEndpoint
    node_a: IkeEndpoint
    node_b: IkeEndpoint
    store_a: SaStore
    store_b: SaStore
    net: Network
    client_sa: IkeSession
    a_sa: IkeSession


def cluster(open_store: StoreFactory, **config: object) -> Cluster:
    """A client with an IKE SA (and its Child SA) to node A; node B idle; one shared store."""
    client, gateway, peer, net = pair(endpoint_options=config)
    store_a = open_store("A")
    # A memory store is one object: node B gets a view of it that writes as "B".
    store_b = store_a.node("B") if isinstance(store_a, MemoryStore) else open_store("B")
    node_a = IkeEndpoint(gateway.config, store_a, random=counter_random(2))
    node_b = IkeEndpoint(gateway.config, store_b, random=counter_random(3))
    net.hosts[RESPONDER_HOST] = node_a
    net.hosts[NODE_B_HOST] = node_b
    client_sa = client.initiate(peer, 0.0)
    net.run(0.0)
    (a_sa,) = node_a.sessions
    drain(client), drain(node_a)
    return Cluster(client, node_a, node_b, store_a, store_b, net, client_sa, a_sa)
