"""horus-sdk: make a long-running asyncio service say whether it is *working*, not just alive.

Standard library only. Nothing starts until you ask: no thread, no signal handler, no patching.
"""

from horus_sdk.blocking import BlockingDetector, BlockingReport
from horus_sdk.control import Control, HandedOver, LeaseLost, Order, Permit, Trips
from horus_sdk.control_files import Mode
from horus_sdk.deadline import DeadlineExceeded, StreamStalled, deadline, guard_stream
from horus_sdk.formats import crash_summary
from horus_sdk.heartbeat import Heartbeat
from horus_sdk.journal import JournalEntry, JournalError, OrderJournal, OrderState
from horus_sdk.lease import Lease, LeaseError
from horus_sdk.orders import resolve_in_doubt, submit
from horus_sdk.reconcile import BrokerReport, Reconciliation, reconcile, run_reconcile
from horus_sdk.watchdog import LoopWatchdog

__version__ = "0.1.0"

__all__ = [
    "BlockingDetector",
    "BlockingReport",
    "BrokerReport",
    "Control",
    "DeadlineExceeded",
    "HandedOver",
    "Heartbeat",
    "JournalEntry",
    "JournalError",
    "Lease",
    "LeaseError",
    "LeaseLost",
    "LoopWatchdog",
    "Mode",
    "Order",
    "OrderJournal",
    "OrderState",
    "Permit",
    "Reconciliation",
    "StreamStalled",
    "Trips",
    "__version__",
    "crash_summary",
    "deadline",
    "guard_stream",
    "reconcile",
    "resolve_in_doubt",
    "run_reconcile",
    "submit",
]
