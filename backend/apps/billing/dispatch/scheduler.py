"""Which leased queue acts next, and when: waiting is data, not a blocked thread.

The consumer process holds many queues; a throttled one acts once every few seconds (20
messages a minute is one send every 3 s) and may wait minutes for a provider's `Retry-After`.
Each queue is an entry with the instant it may next act, in a heap. A bounded pool of sender
threads asks `take()` for the next entry that is due, does one step with it and gives it back
with `done(entry, next_at)`. An entry that waits holds no thread, no database connection and no
slot: it is a tuple in a heap.

Who goes first when more entries are due than threads are free:

1. **one in flight per lane** — a lane is the WhatsApp number (the pace key): its sends are
   serialised, so the pace limits real sends, and a provider that hangs holds one thread, not
   one per queue of that number;
2. **fair share** — a tenant already running its share of the threads (threads ÷ tenants with
   work) waits while another tenant has a due entry; and no tenant ever holds more than half
   the threads, even alone: a tenant arriving while another's provider hangs finds threads free
   at once, instead of waiting for a deadline to end;
3. **priority** — overdue 10 > upcoming 5 > notification 1; on one lane, an entry also waits
   for a higher-priority entry of the same lane due within `lane_window` seconds (the slot is
   shared: it could not send before that one anyway), so which queue of a number sends next
   is decided by priority, not by whose clock read came a few milliseconds earlier; and an
   entry that has just sent yields once to an entry of the same lane and priority due within
   `lane_window` of it, so the queues of one number take turns whatever the noise in their
   clocks (both wake for the same slot; the one that just had a slot lets the other have it);
4. **least recently served tenant**, then the earliest due entry.

Pure and in memory: no database, no Redis, the clock injected, so the rules are tested without
threads or sleeps. Thread-safe: every method takes the one lock.

Cost: tenants with due entries sit in a heap ordered by rule 3 then 4 (their head entry's
priority, when last served, the head's instant), so a pick looks at the best tenant and sets
aside only those at their share or cap — at most one per busy thread: O(threads × log n), not a
scan of every tenant (10,000 due queues of 1,000 tenants drain in a blink).
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Entry:
    """One queue this process holds. `payload` is the caller's (the queue runner)."""

    key: Hashable  # the queue id: a queue is held once
    tenant: Hashable
    lane: Hashable  # the WhatsApp number: one step in flight per lane
    priority: int
    payload: Any = None
    due_at: float = 0.0
    seq: int = 0
    removed: bool = field(default=False, repr=False)
    in_flight: bool = field(default=False, repr=False)
    timed: bool = field(default=False, repr=False)  # waiting in the heap of instants, not yet due
    yields: bool = field(default=False, repr=False)  # it has just sent: its lane's peers go first once


# How far ahead a lane looks for a higher-priority entry before letting a lower one go: wider
# than any wake-up noise of a loaded box, and short beside any send interval (the lower one
# loses at most this much of a slot it could not have used first anyway).
LANE_WINDOW = 0.5


class Scheduler:
    def __init__(
        self,
        *,
        threads: int,
        clock: Callable[[], float] = time.monotonic,
        gather: float = 0.0025,
        lane_window: float = LANE_WINDOW,
    ) -> None:
        self.threads = max(1, int(threads))
        self.clock = clock
        # Entries due within `gather` seconds count as due together: queues waiting for the same
        # slot of a shared number wake as one group, and priority, not a microsecond, decides.
        self.gather = gather
        self.lane_window = lane_window
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._seq = itertools.count()
        self._timed: list[tuple[float, int, Entry]] = []  # not yet due, by instant
        self._ready: dict[Hashable, list[tuple[int, float, int, Entry]]] = {}  # tenant → due entries, lane free
        # Tenants with due entries, best first: (-head priority, last served, head due, head seq,
        # tenant). Lazy: a tuple that is not the tenant's current one (`_order_key`) is skipped.
        self._order: list[tuple[int, int, float, int, Hashable]] = []
        self._order_key: dict[Hashable, tuple[int, int, float, int, Hashable]] = {}
        self._blocked: dict[Hashable, list[Entry]] = {}  # lane → due entries waiting for their lane
        # lane → priority → its timed entries by instant (lazy: an entry no longer timed is
        # skipped), so a due entry finds a better one of its lane about to come in O(log n).
        self._lane_timed: dict[Hashable, dict[int, list[tuple[float, int, Entry]]]] = {}
        self._entries: dict[Hashable, Entry] = {}
        self._busy_lanes: set[Hashable] = set()
        self._in_flight: dict[Hashable, int] = {}  # tenant → steps running
        self._served: dict[Hashable, int] = {}  # tenant → when last served (a counter, not a clock)
        self._serve_clock = itertools.count(1)
        self._closed = False

    # ------------------------------------------------------------------ holding entries
    def add(self, entry: Entry, *, at: float | None = None) -> Entry | None:
        """Hold `entry`, due at `at` (now by default). A queue held already is replaced (a new
        lease of the same queue); the old entry is returned so the caller can drop its state."""
        with self._lock:
            old = self._entries.pop(entry.key, None)
            if old is not None:
                old.removed = True
            self._entries[entry.key] = entry
            self._schedule(entry, self.clock() if at is None else at)
            self._changed.notify()
            return old

    def remove(self, key: Hashable) -> Entry | None:
        """Forget a queue (it left this process). An entry in flight is dropped at `done()`."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                entry.removed = True
            return entry

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._entries)

    def __iter__(self) -> Iterator[Hashable]:
        """The held keys as they are now (the scheduler changes while the caller loops)."""
        return iter(self.keys())

    def waiting(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    # ------------------------------------------------------------------ the sender threads' side
    def take(self, timeout: float | None = None) -> Entry | None:
        """The next entry to step, marked in flight; None after `timeout` seconds with nothing
        due (0: do not wait) or once closed."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._lock:
            while not self._closed:
                self._promote_due()
                entry = self._pick()
                if entry is not None:
                    entry.in_flight = True
                    self._busy_lanes.add(entry.lane)
                    self._in_flight[entry.tenant] = self._in_flight.get(entry.tenant, 0) + 1
                    self._served[entry.tenant] = next(self._serve_clock)
                    self._index(entry.tenant)  # served just now: it goes behind the others
                    return entry
                now = self.clock()
                wait = self._timed[0][0] - self.gather - now if self._timed else None
                if deadline is not None:
                    remaining = deadline - now
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._changed.wait(None if wait is None else max(wait, 0.0005))
            return None

    def done(self, entry: Entry, next_at: float | None, *, sent: bool = False) -> None:
        """The step is over: `next_at` is when the queue may act again, None when it left;
        `sent` when the step used its lane's slot (rule 3: its peers go first next time)."""
        with self._lock:
            entry.in_flight = False
            self._busy_lanes.discard(entry.lane)
            left = self._in_flight.get(entry.tenant, 1) - 1
            if left:
                self._in_flight[entry.tenant] = left
            else:
                self._in_flight.pop(entry.tenant, None)
            for waiting in self._blocked.pop(entry.lane, []):
                if not waiting.removed:
                    self._make_ready(waiting)
            if next_at is None or entry.removed:
                if self._entries.get(entry.key) is entry:
                    del self._entries[entry.key]
            else:
                entry.yields = sent
                self._schedule(entry, next_at)
            self._changed.notify_all()

    def reschedule(self, key: Hashable, at: float) -> bool:
        """Bring a waiting queue's next step forward (or back), e.g. when a control message says
        its state changed. False when it is not held or is in flight."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.in_flight:
                return False
            entry.removed = True  # its heap/ready slot is now stale
            fresh = Entry(entry.key, entry.tenant, entry.lane, entry.priority, entry.payload)
            self._entries[key] = fresh
            self._schedule(fresh, at)
            self._changed.notify()
            return True

    def close(self) -> None:
        """Wake every waiting thread; `take()` answers None from now on."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def wake(self) -> None:
        with self._lock:
            self._changed.notify_all()

    # ------------------------------------------------------------------ inside the lock
    def _schedule(self, entry: Entry, at: float) -> None:
        entry.due_at = at
        entry.seq = next(self._seq)
        entry.timed = True
        heapq.heappush(self._timed, (at, entry.seq, entry))
        by_priority = self._lane_timed.setdefault(entry.lane, {})
        lane_heap = by_priority.setdefault(entry.priority, [])
        _drop_stale_heads(lane_heap)
        heapq.heappush(lane_heap, (at, entry.seq, entry))

    def _better_coming(self, entry: Entry, within: float) -> float | None:
        """The instant of the earliest higher-priority entry of `entry`'s lane that is due by
        `within`, if any."""
        best: float | None = None
        by_priority = self._lane_timed.get(entry.lane)
        if not by_priority:
            return None
        for priority, lane_heap in list(by_priority.items()):
            _drop_stale_heads(lane_heap)
            if not lane_heap:
                del by_priority[priority]
                continue
            due_at = lane_heap[0][0]
            if priority > entry.priority and due_at <= within and (best is None or due_at < best):
                best = due_at
        if not by_priority:
            del self._lane_timed[entry.lane]
        return best

    def _peer_coming(self, entry: Entry, within: float) -> float | None:
        """The instant of the earliest other entry of `entry`'s lane and priority timed to act
        by `within`, if any (`entry` is no longer timed: its own heap tuples are stale)."""
        lane_heap = self._lane_timed.get(entry.lane, {}).get(entry.priority)
        if not lane_heap:
            return None
        _drop_stale_heads(lane_heap)
        return lane_heap[0][0] if lane_heap and lane_heap[0][0] <= within else None

    def _promote_due(self) -> None:
        now = self.clock() + self.gather
        while self._timed and self._timed[0][0] <= now:
            due_at, seq, entry = heapq.heappop(self._timed)
            if entry.removed or seq != entry.seq:
                continue
            entry.timed = False
            better_at = self._better_coming(entry, now + self.lane_window)
            if better_at is None and entry.yields:
                entry.yields = False  # once: two entries that both yield cannot defer for ever
                better_at = self._peer_coming(entry, now + self.lane_window)
            if better_at is not None:
                # Let the better one of the lane go first: come back just after its instant.
                self._schedule(entry, max(better_at, due_at) + 1e-6)
                continue
            if entry.lane in self._busy_lanes:
                self._blocked.setdefault(entry.lane, []).append(entry)
            else:
                self._make_ready(entry)

    def _make_ready(self, entry: Entry) -> None:
        heapq.heappush(self._ready.setdefault(entry.tenant, []), (-entry.priority, entry.due_at, entry.seq, entry))
        self._index(entry.tenant)

    def _pick(self) -> Entry | None:
        """Fair share, then priority, then the least recently served tenant."""
        active = len(self._ready) + sum(1 for tenant in self._in_flight if tenant not in self._ready)
        share = max(1, math.ceil(self.threads / max(active, 1)))
        cap = max(1, self.threads // 2)
        aside: list[tuple[int, int, float, int, Hashable]] = []
        fallback: Hashable | None = None  # the best tenant at or over its share (under the cap)
        chosen: Hashable | None = None
        while self._order:
            key = heapq.heappop(self._order)
            tenant = key[4]
            if self._order_key.get(tenant) != key:
                continue  # stale: the tenant was indexed again since
            if self._head_key(tenant) != key:
                self._order_key.pop(tenant)
                self._index(tenant)  # its head changed (a stale or lane-blocked entry left)
                continue
            running = self._in_flight.get(tenant, 0)
            if running >= cap or running >= share:
                aside.append(key)
                if running < cap and fallback is None:
                    fallback = tenant
                continue
            chosen = tenant
            break
        if chosen is None:
            chosen = fallback
        for key in aside:
            if key[4] != chosen:
                self._order_key[key[4]] = key
                heapq.heappush(self._order, key)
        if chosen is None:
            return None
        self._order_key.pop(chosen, None)
        entry = heapq.heappop(self._ready[chosen])[3]
        self._index(chosen)
        return entry

    def _index(self, tenant: Hashable) -> None:
        """Put the tenant's current order key in `_order` unless it is there already."""
        key = self._head_key(tenant)
        if key is None:
            self._order_key.pop(tenant, None)
        elif self._order_key.get(tenant) != key:
            self._order_key[tenant] = key
            heapq.heappush(self._order, key)

    def _head_key(self, tenant: Hashable) -> tuple[int, int, float, int, Hashable] | None:
        """The tenant's order key, after dropping its stale heads (rescheduled, removed, or
        their lane busy since they became due: those wait for the lane); None once it has no
        due entry."""
        heap = self._ready.get(tenant)
        while heap:
            _, _, seq, head = heap[0]
            if head.removed or seq != head.seq:
                heapq.heappop(heap)
            elif head.lane in self._busy_lanes:
                heapq.heappop(heap)
                self._blocked.setdefault(head.lane, []).append(head)
            else:
                break
        if not heap:
            self._ready.pop(tenant, None)
            return None
        neg_priority, due_at, seq, _ = heap[0]
        return (neg_priority, self._served.get(tenant, 0), due_at, seq, tenant)


def _drop_stale_heads(lane_heap: list[tuple[float, int, Entry]]) -> None:
    while lane_heap:
        _, seq, head = lane_heap[0]
        if head.removed or not head.timed or seq != head.seq:
            heapq.heappop(lane_heap)
        else:
            break
