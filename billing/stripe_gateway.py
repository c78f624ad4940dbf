"""The one module that talks to Stripe, through the official SDK's StripeClient.

The client is built from settings when needed (never configured globally at import time). Every
creating call carries an idempotency key derived from our own objects; our tables stay the record
and idempotency holds on our side too (a Stripe-compatible server may ignore the key).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import stripe
from stripe._base_address import BaseAddresses

from market.errors import MarketError
from market.settings import Settings

LIST_PAGES = 20
"""How far back the re-check job looks for intents at Stripe: 2,000 intents."""


class StripeUnavailable(MarketError):
    status_code = 503


@dataclass(frozen=True)
class IntentState:
    """What we need to know of a PaymentIntent."""

    id: str
    status: str
    """Stripe's status: succeeded, processing, requires_payment_method, canceled, ..."""
    amount: int
    """Minor units."""
    currency: str
    """Upper-case ISO code."""
    failure_code: str
    metadata: dict[str, str]

    @classmethod
    def from_object(cls, obj: Any) -> IntentState:
        if hasattr(obj, "to_dict"):
            obj = obj.to_dict()
        error = _get(obj, "last_payment_error") or {}
        amount = _get(obj, "amount_received") or _get(obj, "amount") or 0
        return cls(
            id=str(_get(obj, "id")),
            status=str(_get(obj, "status") or ""),
            amount=int(amount),
            currency=str(_get(obj, "currency") or "").upper(),
            failure_code=str(_get(error, "code") or _get(error, "decline_code") or ""),
            metadata={str(k): str(v) for k, v in dict(_get(obj, "metadata") or {}).items()},
        )


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    try:
        return obj[key]
    except (KeyError, TypeError):
        return getattr(obj, key, None)


class CardDeclined(Exception):
    def __init__(self, code: str, intent: IntentState | None) -> None:
        super().__init__(code)
        self.code = code
        self.intent = intent


class StripeGateway:
    """Customers, PaymentIntents, refunds and webhook verification."""

    def __init__(self, settings: Settings) -> None:
        if settings.stripe_api_key is None:
            raise StripeUnavailable("stripe_not_configured")
        base: BaseAddresses | None = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self.client = stripe.StripeClient(
            settings.stripe_api_key.get_secret_value(), base_addresses=base, max_network_retries=0
        )
        self.webhook_secret = (
            settings.stripe_webhook_secret.get_secret_value() if settings.stripe_webhook_secret else None
        )

    @staticmethod
    def configured(settings: Settings) -> bool:
        return settings.stripe_api_key is not None

    def create_customer(self, *, org_id: str, name: str) -> str:
        try:
            customer = self.client.v1.customers.create(
                params={"name": name, "metadata": {"org_id": org_id}},
                options={"idempotency_key": f"customer-{org_id}"},
            )
        except stripe.StripeError as error:
            raise StripeUnavailable("stripe_error", detail=str(error.user_message or error)) from error
        return str(customer.id)

    def card_method(self, *, number: str, exp_month: int, exp_year: int, cvc: str) -> str:
        """A card PaymentMethod at Stripe for the card's details (sent once, never stored or logged here).

        Raises CardDeclined when Stripe refuses the details (an invalid number or expiry)."""
        try:
            method = self.client.v1.payment_methods.create(
                params={
                    "type": "card",
                    "card": {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": cvc},
                }
            )
        except (stripe.CardError, stripe.InvalidRequestError) as error:
            raise CardDeclined(str(error.code or "invalid_card"), None) from None
        except stripe.StripeError as error:
            raise StripeUnavailable("stripe_error", detail=str(error.user_message or error)) from None
        return str(method.id)

    def pay(
        self, *, customer: str, amount: int, currency: str, payment_method: str, metadata: dict[str, str], key: str
    ) -> IntentState:
        """Create and confirm a card PaymentIntent. Raises CardDeclined when the card is refused."""
        try:
            intent = self.client.v1.payment_intents.create(
                params={  # type: ignore[typeddict-unknown-key]
                    "amount": amount,
                    "currency": currency.lower(),
                    "customer": customer,
                    "payment_method": payment_method,
                    "payment_method_types": ["card"],
                    "confirm": True,
                    "metadata": metadata,
                },
                options={"idempotency_key": key},
            )
        except stripe.CardError as error:
            intent_obj = _get(error.error, "payment_intent") if error.error else None
            state = IntentState.from_object(intent_obj) if intent_obj else None
            raise CardDeclined(str(error.code or "card_declined"), state) from error
        except stripe.InvalidRequestError as error:
            raise CardDeclined(str(error.code or "invalid_payment_method"), None) from error
        except stripe.StripeError as error:
            raise StripeUnavailable("stripe_error", detail=str(error.user_message or error)) from error
        return IntentState.from_object(intent)

    def intents(self, *, pages: int = LIST_PAGES) -> Iterator[IntentState]:
        """PaymentIntents at Stripe, newest first, at most `pages` pages of 100. Listed and filtered
        here (not searched), because Stripe-compatible test servers have no search."""
        starting_after: str | None = None
        for _ in range(pages):
            params: dict[str, Any] = {"limit": 100}
            if starting_after:
                params["starting_after"] = starting_after
            try:
                page = self.client.v1.payment_intents.list(params=params)  # type: ignore[arg-type]
            except stripe.StripeError as error:
                raise StripeUnavailable("stripe_error", detail=str(error.user_message or error)) from error
            data = list(page.data)
            yield from (IntentState.from_object(intent) for intent in data)
            if not page.has_more or not data:
                return
            starting_after = str(data[-1].id)

    def retrieve(self, intent_id: str) -> IntentState:
        try:
            return IntentState.from_object(self.client.v1.payment_intents.retrieve(intent_id))
        except stripe.StripeError as error:
            raise StripeUnavailable("stripe_error", detail=str(error.user_message or error)) from error

    def refund(self, *, intent_id: str, amount: int, key: str) -> str:
        try:
            refund = self.client.v1.refunds.create(
                params={"payment_intent": intent_id, "amount": amount}, options={"idempotency_key": key}
            )
        except stripe.StripeError as error:
            raise StripeUnavailable("stripe_error", detail=str(error.user_message or error)) from error
        return str(refund.id)

    def verify(self, payload: bytes, signature: str | None) -> Any:
        """The event, if the signature is valid for our webhook secret; raises ValueError otherwise."""
        if not self.webhook_secret:
            raise ValueError("no webhook secret configured")
        try:
            return self.client.construct_event(payload, signature, self.webhook_secret)
        except stripe.SignatureVerificationError as error:
            raise ValueError(str(error)) from error
