from ikecore.sa import IkeSa

def encode(sa: IkeSa) -> tuple[bytes, bytes]: ...
def decode(
    public: bytes | bytearray | memoryview,
    secret: bytes | bytearray | memoryview,
    record_format: int = 5,
) -> IkeSa: ...
