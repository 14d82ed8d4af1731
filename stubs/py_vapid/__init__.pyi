"""What the project uses of py-vapid 1.9.6."""

from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric.ec import (
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
)

class Vapid01:
    @classmethod
    def from_pem(cls, private_key: bytes) -> Self: ...
    @classmethod
    def from_string(cls, private_key: str) -> Self: ...
    @property
    def private_key(self) -> EllipticCurvePrivateKey: ...
    @property
    def public_key(self) -> EllipticCurvePublicKey: ...
    def sign(self, claims: dict[str, Any], crypto_key: str | None = ...) -> dict[str, str]: ...

class Vapid02(Vapid01): ...
