"""Who is acting: a user, a mobile device, an outside customer, or the system itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from weakref import WeakValueDictionary

from models import Customer, MobileSession, SenderType, User, UserFacts


@dataclass(frozen=True, slots=True)
class Actor:
    """The author of an operation. Exactly one of ``user``, ``device``, ``customer`` is set,
    except for the system actor, which has none."""

    kind: SenderType
    #: The user's facts, not their row: a connection holds its actor while it is open.
    user: UserFacts | None = None
    device: MobileSession | None = None
    customer: Customer | None = None
    #: The login session of the token a user's connection or request came with
    #: (backend/auth/sessions.py): a logout of it closes that connection.
    session_id: str | None = None
    #: ``key``, made on first use: the room tables and counters of a connection then all
    #: hold one string rather than a copy each.
    _key: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of_user(cls, user: User | UserFacts, session_id: str | None = None) -> Actor:
        """The actor of ``user`` (a row is made into its facts, shared with the other actors
        of that user whose facts are the same: ``shared_facts``)."""
        facts = user if isinstance(user, UserFacts) else UserFacts.of(user)
        return cls(SenderType.USER, user=shared_facts(facts), session_id=session_id)

    @classmethod
    def of_device(cls, device: MobileSession) -> Actor:
        return cls(SenderType.MOBILE, device=device)

    @classmethod
    def of_customer(cls, customer: Customer) -> Actor:
        return cls(SenderType.CUSTOMER, customer=customer)

    @property
    def key(self) -> str:
        """A stable string naming the actor, used for idempotency, reactions and receipts."""
        key = self._key
        if key is None:
            if self.user is not None:
                key = f"user:{self.user.id}"
            elif self.device is not None:
                key = f"mobile:{self.device.device_id}"
            elif self.customer is not None:
                key = f"customer:{self.customer.id}"
            else:
                key = "system"
            object.__setattr__(self, "_key", key)  # frozen: set once, as the fields were
        return key

    @property
    def is_staff(self) -> bool:
        return self.user is not None and self.user.is_staff

    @property
    def user_id(self) -> int | None:
        return self.user.id if self.user is not None else None

    @property
    def device_id(self) -> str | None:
        return self.device.device_id if self.device is not None else None

    @property
    def name(self) -> str:
        if self.user is not None:
            return self.user.display_name
        if self.device is not None:
            return "Mobile user"
        if self.customer is not None:
            return self.customer.display_name
        return "System"


SYSTEM = Actor(SenderType.SYSTEM)

#: The facts of users some actor holds, by user id: connections of one user share one object
#: (and its strings) instead of a copy each. Weak: an entry goes with the last actor holding it.
_shared: WeakValueDictionary[int, UserFacts] = WeakValueDictionary()


def shared_facts(facts: UserFacts) -> UserFacts:
    """``facts``, or the equal facts an actor of the same user already holds. Facts that
    differ (the row changed since) replace them for the actors made from now on; those made
    before keep theirs, as they kept the row they were made with."""
    held = _shared.get(facts.id)
    if held is not None and held == facts:
        return held
    _shared[facts.id] = facts
    return facts


async def actor_from_key(key: str) -> Actor | None:
    """The actor an ``Actor.key`` names, loaded again (None when it no longer exists)."""
    kind, _, ident = key.partition(":")
    if kind == "user" and ident.isdigit():
        user = await User.get_or_none(id=int(ident))
        return None if user is None else Actor.of_user(user)
    if kind == "mobile" and ident:
        device = await MobileSession.get_or_none(device_id=ident)
        return None if device is None else Actor.of_device(device)
    if kind == "customer" and ident.isdigit():
        customer = await Customer.get_or_none(id=int(ident))
        return None if customer is None else Actor.of_customer(customer)
    return None
