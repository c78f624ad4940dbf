"""Benchmark: finalize 10,000 invoices while a billing run of the same period links late usage, on
SQLite and PostgreSQL, and check the result is exact.

    .venv/bin/python -m bench.billing_finalize [--buyers 10000] [--records 200000] [--postgres URL]

Set-up (not timed): the parties and usage of `bench.billing_run`, one billing run (10,000 drafts),
then late usage of the same period. Timed: three period finalizations and one billing run started
together in threads with their own connections (the issue's race: three `billing finalize` and a
`billing run`). They queue on the billing lock, so the result is that of some serial order. Checked:
invoice and statement numbers are gapless and unique, one receivable entry per owed invoice and
receivables equal to what was invoiced, and reconciliation finds nothing but `unpaid` (nothing is
paid in the bench) and, if the finalizations went first, the late usage waiting for the next period.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text

from bench.billing_run import DEFAULT_PG, PERIOD, _load_usage, _seed_parties
from bench.databases import on_both_databases
from billing import invoices, rating, reconciliation
from billing.config import Period
from billing.models import DocumentSequence, Invoice, InvoiceStatus, JournalEntry, JournalLine
from market.db import Database, migrate

EXPECTED = {"unpaid", "usage_after_finalization"}


def _concurrently(database: Database, period: Period) -> tuple[float, dict[str, float], list[BaseException]]:
    barrier = threading.Barrier(4)
    spent: dict[str, float] = {}
    errors: list[BaseException] = []

    def act(name: str) -> None:
        try:
            barrier.wait()
            started = time.perf_counter()
            with database.transaction() as session:
                if name == "run":
                    rating.run_period(session, period, now=datetime(2026, 11, 1, 3, tzinfo=UTC))
                else:
                    invoices.finalize_period(session, None, period)
            spent[name] = round(time.perf_counter() - started, 2)
        except BaseException as error:
            errors.append(error)

    names = ["finalize-1", "run", "finalize-2", "finalize-3"]
    threads = [threading.Thread(target=act, args=(n,)) for n in names]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return round(time.perf_counter() - started, 2), spent, errors


def _check(database: Database, period: Period) -> dict[str, Any]:
    with database.transaction() as session:
        found = list(session.scalars(select(Invoice).where(Invoice.period == period.key)))
        numbered = [i for i in found if i.status != InvoiceStatus.DRAFT.value]
        gapless = True
        for prefix in (invoices.INVOICE_PREFIX, invoices.STATEMENT_PREFIX):
            taken = sorted(int(str(i.number).rsplit("-", 1)[1]) for i in numbered if str(i.number).startswith(prefix))
            last = session.scalar(select(func.max(DocumentSequence.last_number)).where(DocumentSequence.kind == prefix))
            gapless &= taken == list(range(1, len(taken) + 1)) and (last or 0) == len(taken)
        entries = dict(
            session.execute(
                select(JournalEntry.reference, func.count())
                .where(JournalEntry.kind == "invoice_finalized")
                .group_by(JournalEntry.reference)
            ).all()
        )
        receivables = int(
            session.scalar(
                select(func.coalesce(func.sum(JournalLine.amount_minor), 0)).where(
                    JournalLine.account.like("receivable:%")
                )
            )
            or 0
        )
        invoiced = sum(i.total_minor for i in numbered)
        report = reconciliation.reconcile(session, None, period)
    owed = {i.id for i in numbered if i.total_minor}
    unexpected = sorted({m.reason for m in report.mismatches} - EXPECTED)
    return {
        "finalized": len(numbered),
        "drafts_left": len(found) - len(numbered),
        "gapless": gapless,
        "one_entry_each": entries == dict.fromkeys(owed, 1),
        "receivables": receivables,
        "invoiced": invoiced,
        "unexpected_mismatches": unexpected,
    }


def bench(database: Database, label: str, buyers: int, records: int) -> dict[str, Any]:
    migrate(database)
    parties = _seed_parties(database, buyers)
    _load_usage(database, parties, records)
    period = Period.parse(PERIOD, 1)
    with database.transaction() as session:
        rating.run_period(session, period, now=datetime(2026, 11, 1, 1, tzinfo=UTC))
    _load_usage(database, parties, records // 10, first=records)  # late usage of the same period
    if not database.is_sqlite:
        with database.engine.begin() as connection:
            connection.execute(text("ANALYZE"))
    wall, spent, errors = _concurrently(database, period)
    checked = _check(database, period)
    ok = (
        not errors
        and checked["gapless"]
        and checked["one_entry_each"]
        and checked["receivables"] == checked["invoiced"]
        and not checked["unexpected_mismatches"]
        and checked["drafts_left"] == 0
    )
    return {"database": label, "buyers": buyers, "wall_s": wall, **spent, **checked, "errors": errors, "ok": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--buyers", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    results = on_both_databases(
        lambda database, name: bench(database, name, args.buyers, args.records),
        args.postgres,
        skip_postgres=args.skip_postgres,
    )
    for r in results:
        print(r)
    if not all(r["ok"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
