"""Request and response bodies for accounts."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from market.accounts.models import OrgKind, Role


class OrgIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: OrgKind


class OrgOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    kind: str
    created_at: datetime
    uscc: str | None = Field(
        default=None, description="统一社会信用代码 (unified social credit code); null if not provided."
    )
    address: str | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    bank_name: str | None = Field(default=None, description="开户行: bank and branch.")
    bank_account: str | None = None


class OrgProfileIn(BaseModel):
    """Fields to change; a field sent as null is cleared (shown as missing on documents), one left out is kept."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    uscc: str | None = Field(default=None, max_length=40, description="Validated with its GB 32100-2015 checksum.")
    address: str | None = Field(default=None, min_length=1, max_length=500)
    contact_name: str | None = Field(default=None, min_length=1, max_length=200)
    contact_phone: str | None = Field(default=None, min_length=1, max_length=40)
    contact_email: str | None = Field(default=None, min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    bank_name: str | None = Field(default=None, min_length=1, max_length=200)
    bank_account: str | None = Field(default=None, max_length=64)


class UserIn(BaseModel):
    org_id: str
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    role: Role


class PasswordIn(BaseModel):
    password: str = Field(min_length=1, max_length=200, description="The new web console password (12+ characters).")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    org_id: str
    name: str
    email: str
    role: str


class KeyIn(BaseModel):
    label: str = Field(default="", max_length=200)


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    user_id: str
    label: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class IssuedKeyOut(KeyOut):
    key: str = Field(description="The API key in clear. It is shown only once; store it now.")


class WhoAmI(BaseModel):
    user_id: str
    org_id: str
    org_name: str
    role: str
