"""ikecore: an IKEv2 core with RFC 7791 IKE SA cloning.

The public names of API.md are importable from here. The compiled core lives in
``ikecore._fast``; everything else is pure Python (see DESIGN.md).
"""

from __future__ import annotations

from ikecore.aead import AesGcm, ChaCha20Poly1305, IkeCipher
from ikecore.constants import (
    DhGroup,
    EncrId,
    ExchangeType,
    IdType,
    IntegId,
    NotifyType,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformType,
)
from ikecore.errors import (
    CloneRefused,
    IkeError,
    IntegrityError,
    LocalProtocolError,
    MalformedMessage,
    RemoteProtocolError,
    ReplayError,
    SequenceExhausted,
)
from ikecore.esp import EspInbound, EspOutbound
from ikecore.keys import (
    ChildKeys,
    IkeKeys,
    IkeSuite,
    child_keys,
    ike_keys,
    ike_keys_initial,
    ike_keys_rekey,
    prf,
    prf_plus,
    psk_auth,
    skeyseed,
    skeyseed_rekey,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "AesGcm",
    "ChaCha20Poly1305",
    "ChildKeys",
    "CloneRefused",
    "DhGroup",
    "EncrId",
    "EspInbound",
    "EspOutbound",
    "ExchangeType",
    "IdType",
    "IkeCipher",
    "IkeError",
    "IkeKeys",
    "IkeSuite",
    "IntegId",
    "IntegrityError",
    "LocalProtocolError",
    "MalformedMessage",
    "NotifyType",
    "PayloadType",
    "PrfId",
    "ProtocolId",
    "RemoteProtocolError",
    "ReplayError",
    "SequenceExhausted",
    "TransformType",
    "__version__",
    "child_keys",
    "ike_keys",
    "ike_keys_initial",
    "ike_keys_rekey",
    "prf",
    "prf_plus",
    "psk_auth",
    "skeyseed",
    "skeyseed_rekey",
]
