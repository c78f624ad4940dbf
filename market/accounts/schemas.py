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
