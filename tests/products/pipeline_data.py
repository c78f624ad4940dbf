"""A deterministic person-level CSV for pipeline tests: identifiers, quasi-identifiers, amounts, bad rows."""

from __future__ import annotations

import csv
import io
from typing import Any

PEOPLE = 80
DISTRICTS = ["Dongcheng", "Xicheng", "Chaoyang", "Haidian"]
SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu"]
GIVEN = ["Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Qiang", "Xiu"]


def id_number(person: int) -> str:
    """An ID-card-like number: region 110105, birth date, sequence, check character."""
    year = 1960 + person % 40
    month = person % 12 + 1
    day = person % 28 + 1
    return f"110105{year}{month:02d}{day:02d}{person % 1000:03d}{'X' if person % 11 == 0 else person % 10}"


def rows() -> list[dict[str, Any]]:
    out = []
    for person in range(PEOPLE):
        name = f"{SURNAMES[person % 10]} {GIVEN[person % 8]}"
        if person >= 10:
            name += " " + SURNAMES[person // 10 % 10]
        for month in (1, 2):
            out.append(
                {
                    "full_name": name,
                    "id_number": id_number(person),
                    "phone": f"13{person:09d}",
                    "birth_date": f"{1960 + person % 40}-{person % 12 + 1:02d}-{person % 28 + 1:02d}",
                    "district": f"  {DISTRICTS[person % 4]} ",
                    "month": month,
                    "amount": f"{(person * 13 + month * 7) % 90 + 10}.50",
                }
            )
    out.append({**out[0]})  # an exact duplicate
    out.append({**out[1], "amount": "-5"})  # below min: rejected
    out.append({**out[2], "amount": "lots"})  # not a number: rejected
    out.append({**out[3], "district": "Atlantis"})  # unknown district: quarantined
    return out


def csv_bytes(data: list[dict[str, Any]] | None = None) -> bytes:
    data = data or rows()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(data[0]))
    writer.writeheader()
    writer.writerows(data)
    return buffer.getvalue().encode()


RECIPE: dict[str, Any] = {
    "tables": {
        "payments": {
            "columns": {
                "person": {"source": "id_number", "required": True, "transform": {"kind": "pseudonymise"}},
                "id_region": {"source": "id_number", "transform": {"kind": "prefix", "length": 6}},
                "birth_year": {
                    "source": "birth_date",
                    "type": "date",
                    "transform": {"kind": "truncate_date", "unit": "year"},
                },
                "phone_hint": {"source": "phone", "transform": {"kind": "mask", "keep_last": 2}},
                "district": {"allowed": DISTRICTS, "on_invalid": "quarantine"},
                "month": {"type": "integer", "min": 1, "max": 12},
                "amount": {"type": "decimal(10,2)", "min": 0, "required": True},
            },
            "dedupe": True,
            "quasi_identifiers": ["district"],
        }
    }
}

POLICY: dict[str, Any] = {
    "min_group_size": 5,
    "tables": {
        "payments": {
            "privacy_unit": "person",
            "dimensions": ["district", "month", "id_region"],
            "measures": ["amount"],
            "hidden": ["birth_year", "phone_hint"],
        }
    },
}
