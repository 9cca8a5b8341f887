"""Channels, select and after(): Go semantics under many threads."""

from __future__ import annotations

import collections
import gc
import random
import threading
import time
from datetime import timedelta

import pytest

from wsfast.channels import Channel, Selected, after, select
from wsfast.errors import ChannelClosed, InvalidOption, Timeout

pytestmark = pytest.mark.timeout(60)


def spawn(fn, *args):
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def wait_until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.002)


# -- basic semantics ---------------------------------------------------------------------


def test_buffered_channel_is_fifo():
    ch = Channel(5)
    for i in range(5):
        assert ch.send(i) is True
    assert len(ch) == 5
    assert [ch.receive() for _ in range(5)] == [(i, True) for i in range(5)]
    assert len(ch) == 0


def test_capacity_and_closed_properties():
    ch = Channel(3)
    assert ch.capacity == 3 and not ch.closed
    ch.close()
    assert ch.closed
    assert Channel().capacity == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_invalid_capacity_rejected(bad):
    with pytest.raises(InvalidOption):
        Channel(bad)


def test_rendezvous_send_blocks_until_received():
    ch = Channel()
    done = threading.Event()

    def sender():
        ch.send("x")
        done.set()

    spawn(sender)
    assert not done.wait(0.15)  # nobody received yet
    assert ch.receive() == ("x", True)
    assert done.wait(5)


def test_rendezvous_receive_blocks_until_sent():
    ch = Channel()
    got = []
    t = spawn(lambda: got.append(ch.receive()))
    time.sleep(0.05)
    assert not got
    assert ch.send(7) is True
    t.join(5)
    assert got == [(7, True)]


def test_send_blocks_while_full():
    ch = Channel(1)
    ch.send(1)
    done = threading.Event()
    spawn(lambda: (ch.send(2), done.set()))
    assert not done.wait(0.1)
    assert ch.receive() == (1, True)
    assert done.wait(5)
    assert ch.receive() == (2, True)


def test_close_delivers_buffered_values_then_not_ok():
    ch = Channel(3)
    ch.send("a")
    ch.send("b")
    ch.close()
    assert ch.receive() == ("a", True)
    assert ch.receive() == ("b", True)
    assert ch.receive() == (None, False)
    assert ch.receive() == (None, False)


def test_close_is_idempotent():
    ch = Channel(1)
    ch.close()
    ch.close()
    assert ch.closed


def test_send_on_closed_channel_raises():
    ch = Channel(1)
    ch.close()
    with pytest.raises(ChannelClosed):
        ch.send(1)
    with pytest.raises(ChannelClosed):
        ch.send(1, timeout=0)


def test_close_wakes_blocked_receivers():
    ch = Channel(2)
    results = []
    threads = [spawn(lambda: results.append(ch.receive())) for _ in range(3)]
    time.sleep(0.05)
    ch.close()
    for t in threads:
        t.join(5)
    assert results == [(None, False)] * 3


@pytest.mark.parametrize("capacity", [0, 1])
def test_close_wakes_blocked_senders_with_channel_closed(capacity):
    ch = Channel(capacity)
    if capacity:
        ch.send("fill")
    errors = []

    def sender():
        try:
            ch.send("x")
        except ChannelClosed as exc:
            errors.append(exc)

    threads = [spawn(sender) for _ in range(3)]
    wait_until(lambda: len(ch._sendq) == 3)
    ch.close()
    for t in threads:
        t.join(5)
    assert len(errors) == 3
    if capacity:
        assert ch.receive() == ("fill", True)
    assert ch.receive() == (None, False)


def test_iteration_stops_when_closed_and_drained():
    ch = Channel(10)

    def producer():
        for i in range(100):
            ch.send(i)
        ch.close()

    spawn(producer)
    assert list(ch) == list(range(100))


def test_len_counts_buffered_values():
    ch = Channel(4)
    assert len(ch) == 0
    ch.send(1)
    ch.send(2)
    assert len(ch) == 2
    ch.receive()
    assert len(ch) == 1


def test_empty_channel_is_still_truthy():
    assert Channel(3) and Channel()


def test_receive_timeout_raises_within_bound():
    ch = Channel(1)
    start = time.monotonic()
    with pytest.raises(Timeout):
        ch.receive(timeout=0.1)
    elapsed = time.monotonic() - start
    assert 0.09 <= elapsed < 2.0
    assert not ch._recvq  # the timed-out waiter is gone


def test_receive_timeout_zero_polls():
    ch = Channel(1)
    with pytest.raises(Timeout):
        ch.receive(timeout=0)
    ch.send(5)
    assert ch.receive(timeout=0) == (5, True)
    ch.close()
    assert ch.receive(timeout=0) == (None, False)


def test_send_timeout_returns_false_without_sending():
    ch = Channel(1)
    ch.send(1)
    assert ch.send(2, timeout=0.05) is False
    assert ch.send(2, timeout=0) is False
    assert not ch._sendq
    assert ch.receive() == (1, True)
    assert len(ch) == 0


def test_rendezvous_send_timeout_when_nobody_receives():
    ch = Channel()
    assert ch.send(1, timeout=0.05) is False
    assert not ch._sendq
    with pytest.raises(Timeout):
        ch.receive(timeout=0)


@pytest.mark.parametrize("bad", [-1, float("nan"), "1s", True])
def test_invalid_timeout_rejected(bad):
    with pytest.raises(InvalidOption):
        Channel(1).receive(timeout=bad)


# -- select -------------------------------------------------------------------------------


def test_select_chooses_randomly_among_ready_cases():
    a, b = Channel(1), Channel(1)
    counts = collections.Counter()
    for _ in range(2000):
        if not len(a):
            a.send("a")
        if not len(b):
            b.send("b")
        r = select(a.case_receive(), b.case_receive())
        counts[r.value] += 1
    assert 0.35 * 2000 <= counts["a"] <= 0.65 * 2000
    assert counts["a"] + counts["b"] == 2000


def test_select_chooses_randomly_among_three():
    chans = [Channel(1) for _ in range(3)]
    counts = collections.Counter()
    for _ in range(3000):
        for i, ch in enumerate(chans):
            if not len(ch):
                ch.send(i)
        counts[select(*[c.case_receive() for c in chans]).value] += 1
    for i in range(3):
        assert 700 <= counts[i] <= 1300


def test_select_returns_selected_fields():
    a, b = Channel(1), Channel(1)
    b.send("v")
    r = select(a.case_receive(), b.case_receive())
    assert isinstance(r, Selected)
    assert r == Selected(b, "v", True, False)
    assert r.channel is b and r.value == "v" and r.ok and not r.default


def test_select_accepts_a_list_of_cases():
    a = Channel(1)
    a.send(1)
    assert select([a.case_receive()]).value == 1


def test_select_default_when_none_ready():
    a, b = Channel(), Channel(1)
    r = select(a.case_receive(), b.case_receive(), default=True)
    assert r == Selected(None, None, False, True)
    assert not a._recvq and not b._recvq
    b.send(1)
    assert select(a.case_receive(), b.case_receive(), default=True) == Selected(b, 1, True, False)


def test_select_without_cases():
    assert select(default=True).default
    with pytest.raises(InvalidOption):
        select()
    with pytest.raises(InvalidOption):
        select("not a case")


def test_select_blocks_until_a_value_arrives():
    a, b = Channel(), Channel()
    spawn(lambda: (time.sleep(0.05), b.send("late")))
    r = select(a.case_receive(), b.case_receive())
    assert r.channel is b and r.value == "late" and r.ok
    assert not a._recvq and not b._recvq


def test_select_send_case_on_buffered_channel():
    a, b = Channel(1), Channel(1)
    a.send("full")
    r = select(a.case_send("x"), b.case_send("y"))
    assert r == Selected(b, None, True, False)
    assert b.receive() == ("y", True)


def test_select_send_case_on_rendezvous_channel_waits_for_receiver():
    a = Channel()
    got = []
    t = spawn(lambda: (time.sleep(0.05), got.append(a.receive())))
    r = select(a.case_send(42))
    assert r.channel is a and r.ok
    t.join(5)
    assert got == [(42, True)]


def test_select_send_on_closed_channel_raises():
    a = Channel(1)
    a.close()
    with pytest.raises(ChannelClosed):
        select(a.case_send(1))


def test_select_send_case_raises_when_closed_while_blocked():
    a = Channel()
    spawn(lambda: (time.sleep(0.05), a.close()))
    with pytest.raises(ChannelClosed):
        select(a.case_send(1))


def test_select_receive_wakes_on_close():
    a, b = Channel(), Channel(2)
    spawn(lambda: (time.sleep(0.05), b.close()))
    r = select(a.case_receive(), b.case_receive())
    assert r == Selected(b, None, False, False)
    assert not a._recvq


def test_select_closed_drained_channel_is_ready_with_ok_false():
    a = Channel(1)
    a.close()
    assert select(a.case_receive(), Channel().case_receive()) == Selected(a, None, False, False)


def test_select_timeout():
    a, b = Channel(), Channel(1)
    start = time.monotonic()
    with pytest.raises(Timeout):
        select(a.case_receive(), b.case_receive(), timeout=0.1)
    assert 0.09 <= time.monotonic() - start < 2.0
    assert not a._recvq and not b._recvq


def test_select_does_not_match_itself():
    a = Channel()
    with pytest.raises(Timeout):
        select(a.case_send(1), a.case_receive(), timeout=0.05)
    assert not a._recvq and not a._sendq


def test_select_matches_another_select_on_rendezvous_channel():
    a = Channel()
    got = []
    t = spawn(lambda: got.append(select(a.case_receive(), Channel().case_receive())))
    time.sleep(0.05)
    r = select(a.case_send("hi"), Channel().case_send("no"))
    t.join(5)
    assert r.channel is a
    assert got[0].value == "hi" and got[0].channel is a


# -- stress -------------------------------------------------------------------------------


def _exactly_once(ch, producers, per, consumers, timeout):
    """``producers`` threads send ``per`` values each, ``consumers`` iterate: every value
    must arrive exactly once. Returns what each consumer got."""
    results = [[] for _ in range(consumers)]

    def produce(p):
        for i in range(per):
            ch.send((p, i))

    def consume(out):
        for v in ch:
            out.append(v)

    cons = [spawn(consume, out) for out in results]
    prods = [spawn(produce, p) for p in range(producers)]
    for t in prods:
        t.join(timeout)
    ch.close()
    for t in cons:
        t.join(timeout)
    allv = [v for out in results for v in out]
    assert len(allv) == producers * per
    assert len(set(allv)) == producers * per
    return results


def test_stress_many_producers_and_consumers_exactly_once():
    results = _exactly_once(Channel(16), producers=8, per=20_000, consumers=4, timeout=30)
    # per-producer order is preserved within each consumer
    for out in results:
        last = {}
        for p, i in out:
            assert i > last.get(p, -1)
            last[p] = i


def test_stress_select_over_shared_channels_exactly_once():
    chans = [Channel(0), Channel(1), Channel(4)]
    senders, per, selectors = 4, 3000, 6
    results = [[] for _ in range(selectors)]

    def send(s):
        rnd = random.Random(s)
        for i in range(per):
            if i % 2:
                chans[rnd.randrange(3)].send((s, i))
            else:  # a select sending on all three: matches whichever is ready
                v = (s, i)
                select(*[c.case_send(v) for c in chans])

    def selector(out):
        open_ = list(chans)
        while open_:
            r = select(*[c.case_receive() for c in open_])
            if r.ok:
                out.append(r.value)
            else:
                open_.remove(r.channel)

    sels = [spawn(selector, out) for out in results]
    snds = [spawn(send, s) for s in range(senders)]
    for t in snds:
        t.join(40)
    for c in chans:
        c.close()
    for t in sels:
        t.join(40)
        assert not t.is_alive()
    allv = [v for out in results for v in out]
    assert len(allv) == senders * per
    assert len(set(allv)) == senders * per
    for c in chans:
        assert not c._recvq and not c._sendq


def test_stress_select_with_timeouts_and_defaults_loses_nothing():
    a, b = Channel(0), Channel(2)
    n = 4000
    got = []
    lock = threading.Lock()
    stop = threading.Event()

    def consumer():
        while not stop.is_set() or len(b):
            try:
                r = select(a.case_receive(), b.case_receive(), timeout=0.001)
            except Timeout:
                continue
            with lock:
                got.append(r.value)

    def poller():
        while not stop.is_set() or len(b):
            r = select(a.case_receive(), b.case_receive(), default=True)
            if r.default:
                time.sleep(0.0005)  # let the other threads run
            else:
                with lock:
                    got.append(r.value)

    threads = [spawn(consumer), spawn(consumer), spawn(poller)]
    for i in range(n):
        (a if i % 3 == 0 else b).send(i)
    stop.set()
    for t in threads:
        t.join(30)
    assert sorted(got) == list(range(n))


def test_stress_rendezvous_exactly_once():
    _exactly_once(Channel(), producers=4, per=3000, consumers=4, timeout=40)


# -- after ----------------------------------------------------------------------------------


def test_after_fires_within_bound():
    start = time.monotonic()
    timer = after("50ms")
    value, ok = timer.receive(timeout=5)
    elapsed = time.monotonic() - start
    assert ok and 0.04 <= elapsed < 1.0
    assert abs(value - time.time()) < 1.0
    assert timer.capacity == 1 and not timer.closed


def test_after_accepts_milliseconds_and_timedelta():
    for d in (30, 30.0, timedelta(milliseconds=30)):
        start = time.monotonic()
        after(d).receive(timeout=5)
        assert 0.02 <= time.monotonic() - start < 1.0


def test_after_zero_fires_immediately():
    assert after(0).receive(timeout=0)[1] is True
    assert after("0s").receive(timeout=0)[1] is True


def test_after_rejects_bad_durations():
    for bad in ("-1s", "abc", -5, None, True):
        with pytest.raises(InvalidOption):
            after(bad)


def test_after_fires_once_and_stays_open():
    timer = after("10ms")
    assert timer.receive(timeout=5)[1]
    with pytest.raises(Timeout):
        timer.receive(timeout=0.1)


def test_after_in_select_like_the_heartbeat_example():
    ch = Channel(1)
    heartbeat = after("50ms")
    r = select(ch.case_receive(), heartbeat.case_receive())
    assert r.channel is heartbeat and r.ok


def test_many_timers_share_one_thread():
    after("1ms").receive(timeout=5)  # make sure the timer thread exists
    before = threading.active_count()
    timers = [after(random.uniform(10, 200)) for _ in range(1000)]
    assert threading.active_count() <= before + 1
    for t in timers:
        assert t.receive(timeout=10)[1]
    assert threading.active_count() <= before + 1


def test_timers_fire_in_deadline_order():
    durations = ["120ms", "40ms", "80ms", "10ms", "160ms"]
    timers = [after(d) for d in durations]
    fired = [t.receive(timeout=5)[0] for t in timers]
    by_deadline = [fired[i] for i in sorted(range(5), key=lambda i: [120, 40, 80, 10, 160][i])]
    assert by_deadline == sorted(by_deadline)


def test_unreferenced_timers_are_dropped_and_referenced_ones_kept():
    from wsfast.channels import _timers

    kept = [after("1h") for _ in range(10)]
    for _ in range(5000):
        after("1h")  # never received: garbage right away
    gc.collect()
    after("1h")
    with _timers._cond:
        live = {id(e[2]()) for e in _timers._heap if e[2]() is not None}
        assert len(_timers._heap) < 4000
    assert {id(t) for t in kept} <= live   # compaction dropped none of the timers in use


# -- sources: offer, resume, fetch ----------------------------------------------------------


class ListSource:
    """A real Source: offers ``items`` into ``ch`` from a producer thread, waiting for
    ``resume()`` whenever an offer is cut short; ``fetch`` can be told to offer values."""

    def __init__(self, ch, items=(), fetchable=()):
        self.ch = ch
        self.items = list(items)
        self.fetchable = list(fetchable)
        self.resumed = threading.Event()
        self.resumes = 0
        self.fetches = []
        ch.set_source(self)

    def resume(self):
        self.resumes += 1
        self.resumed.set()

    def fetch(self, timeout):
        self.fetches.append(timeout)
        if not self.fetchable:
            return False
        values, self.fetchable = self.fetchable, []
        self.ch.offer(values, overflow=True)
        return True

    def produce(self, chunk=500):
        i = 0
        n = len(self.items)
        try:
            while i < n:
                self.resumed.clear()
                j = min(n, i + chunk)
                k = self.ch.offer(self.items[i:j])
                i += k
                if i < j:
                    assert self.resumed.wait(10), "a cut-short source was never resumed"
        except ChannelClosed:
            pass
        self.ch.close()


def test_offer_fits_in_one_round():
    ch = Channel(8)
    assert ch.offer([1, 2, 3]) == 3
    assert ch.offer([0, 4, 5], start=1) == 3
    assert [ch.receive(timeout=0)[0] for _ in range(5)] == [1, 2, 3, 4, 5]


def test_offer_takes_what_fits_and_returns_at_once_when_full():
    ch = Channel(4)
    t0 = time.monotonic()
    assert ch.offer(list(range(10))) == 4
    assert ch.offer([99]) == 0
    assert time.monotonic() - t0 < 1.0
    assert len(ch) == 4
    assert [ch.receive(timeout=0)[0] for _ in range(4)] == [0, 1, 2, 3]


def test_offer_with_overflow_places_everything_beyond_the_capacity():
    ch = Channel(2)
    assert ch.offer(list(range(10)), overflow=True) == 10
    assert len(ch) == 10
    assert [ch.receive(timeout=0)[0] for _ in range(10)] == list(range(10))


def test_offer_hands_values_to_waiting_receivers():
    ch = Channel(4)
    got = []
    threads = [spawn(lambda: got.append(ch.receive())) for _ in range(2)]
    wait_until(lambda: len(ch._recvq) == 2)
    assert ch.offer(["a", "b", "c"]) == 3
    for t in threads:
        t.join(5)
    assert sorted(got) == [("a", True), ("b", True)]
    assert ch.receive() == ("c", True)


def test_offer_wakes_a_select():
    ch = Channel(4)
    got = []
    t = spawn(lambda: got.append(select(Channel().case_receive(), ch.case_receive())))
    wait_until(lambda: len(ch._recvq) == 1)
    ch.offer([1, 2])
    t.join(5)
    assert got[0].value == 1 and got[0].channel is ch
    assert ch.receive() == (2, True)


def test_offer_on_a_closed_channel_raises_and_sends_nothing():
    ch = Channel(2)
    ch.close()
    with pytest.raises(ChannelClosed):
        ch.offer([1])
    assert len(ch) == 0


def test_a_cut_short_source_is_resumed_once_receivers_drain_to_half_capacity():
    ch = Channel(4)
    src = ListSource(ch)
    assert ch.offer(list(range(10))) == 4
    assert ch.receive(timeout=0) == (0, True)   # 3 left: above the low-water mark (2)
    assert src.resumes == 0
    assert ch.receive(timeout=0) == (1, True)   # 2 left: resumed
    assert src.resumes == 1
    assert ch.receive(timeout=0) == (2, True)   # once per cut-short offer, not per value
    assert src.resumes == 1
    assert ch.offer(list(range(4, 10))) == 3
    for _ in range(2):
        ch.receive(timeout=0)
    assert src.resumes == 2


def test_an_offer_that_fits_asks_for_no_resume():
    ch = Channel(4)
    src = ListSource(ch)
    assert ch.offer([1, 2, 3, 4]) == 4
    for _ in range(4):
        ch.receive(timeout=0)
    assert src.resumes == 0


def test_close_resumes_a_waiting_source_whose_next_offer_raises():
    ch = Channel(1)
    src = ListSource(ch)
    assert ch.offer([1, 2, 3]) == 1
    ch.close()
    assert src.resumes == 1
    with pytest.raises(ChannelClosed):
        ch.offer([2, 3])
    assert ch.receive() == (1, True)
    assert ch.receive() == (None, False)


def test_a_receiver_on_an_empty_channel_asks_the_source_to_fetch_first():
    ch = Channel(2)
    src = ListSource(ch, fetchable=["x", "y", "z"])
    assert ch.receive(timeout=1) == ("x", True)   # fetched values come first, beyond capacity
    assert src.fetches == [1]
    assert [ch.receive(timeout=0)[0] for _ in range(2)] == ["y", "z"]


def test_a_receive_timeout_includes_the_time_the_source_spent_fetching():
    ch = Channel(2)

    class SlowSource(ListSource):
        def fetch(self, timeout):
            self.fetches.append(timeout)
            time.sleep(timeout)   # waits its whole share, finds nothing
            return False

    src = SlowSource(ch)
    t0 = time.monotonic()
    with pytest.raises(Timeout):
        ch.receive(timeout=0.3)
    took = time.monotonic() - t0
    assert src.fetches == [0.3]
    assert 0.25 <= took < 0.55, f"receive(timeout=0.3) took {took:.2f} s"


def test_a_detached_source_is_not_asked():
    ch = Channel(2)
    src = ListSource(ch, fetchable=["x"])
    ch.set_source(None)
    with pytest.raises(Timeout):
        ch.receive(timeout=0)
    assert src.fetches == []


def test_a_source_feeding_three_consumers_loses_and_duplicates_nothing():
    ch = Channel(32)
    n = 100_000
    src = ListSource(ch, items=range(n))
    out = [[] for _ in range(3)]

    def consume(o):
        for v in ch:
            o.append(v)

    cs = [spawn(consume, o) for o in out]
    producer = spawn(src.produce)
    producer.join(60)
    for t in cs:
        t.join(30)
    allv = [v for o in out for v in o]
    assert sorted(allv) == list(range(n))
    for o in out:
        assert o == sorted(o)
    assert src.resumes > 0   # the channel was full, and the source came back


# -- interrupted waits ----------------------------------------------------------------------


class _Interrupted(Exception):
    pass


@pytest.fixture
def interrupt_main_soon():
    """Raise _Interrupted in the main thread (via SIGUSR1) shortly after being called."""
    import os
    import signal

    if not hasattr(signal, "pthread_kill"):
        pytest.skip("needs POSIX signals")

    def handler(signum, frame):
        raise _Interrupted()

    old = signal.signal(signal.SIGUSR1, handler)
    main = threading.main_thread().ident
    assert threading.get_ident() == main

    def arm(delay=0.05):
        spawn(lambda: (time.sleep(delay), os.kill(os.getpid(), signal.SIGUSR1)))

    yield arm
    signal.signal(signal.SIGUSR1, old)


def test_interrupted_receive_leaves_no_waiter(interrupt_main_soon):
    ch = Channel(1)
    interrupt_main_soon()
    with pytest.raises(_Interrupted):
        ch.receive()
    assert not ch._recvq
    ch.send(1)
    assert ch.receive(timeout=0) == (1, True)


def test_interrupted_select_leaves_no_waiters(interrupt_main_soon):
    a, b = Channel(), Channel(1)
    interrupt_main_soon()
    with pytest.raises(_Interrupted):
        select(a.case_receive(), b.case_receive())
    assert not a._recvq and not b._recvq


def test_interrupted_send_leaves_no_waiter(interrupt_main_soon):
    ch = Channel()
    interrupt_main_soon()
    with pytest.raises(_Interrupted):
        ch.send("x")
    assert not ch._sendq
    assert ch.send("y", timeout=0) is False


def test_iteration_break_returns_the_untaken_batch_to_the_channel():
    ch = Channel(100)
    for i in range(50):
        ch.send(i)
    seen = []
    for v in ch:
        seen.append(v)
        if v == 9:
            break
    assert seen == list(range(10))
    assert len(ch) == 40
    rest = [ch.receive(timeout=1)[0] for _ in range(40)]
    assert rest == list(range(10, 50))


def test_iteration_exception_in_loop_body_loses_nothing():
    ch = Channel(10)
    for i in range(10):
        ch.send(i)
    with pytest.raises(RuntimeError):
        for v in ch:
            if v == 3:
                raise RuntimeError("consumer failed")
    ch.close()
    assert list(ch) == list(range(4, 10))


_INTERRUPT_SCRIPT = r'''
import signal, sys, threading
# Ctrl-C raises KeyboardInterrupt here whatever this process inherited: SIGINT ignored
# (a background job of a non-interactive shell; Python then leaves it ignored) or
# blocked (the mask of the thread that spawned it)
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
import wsfast
ch = wsfast.Channel(16)
def produce():
    i = 0
    while True:
        try:
            ch.send(i)
        except wsfast.ChannelClosed:
            return
        i += 1
threading.Thread(target=produce, daemon=True).start()
print("ready", flush=True)
try:
    while True:
        if sys.argv[1] == "select":
            wsfast.select(ch.case_receive(), wsfast.after(1).case_receive())
        else:
            ch.receive()
except KeyboardInterrupt:
    print("interrupted", flush=True)
'''


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["select", "receive"])
def test_ctrl_c_during_a_busy_receive_or_select_never_hangs(mode):
    import signal
    import subprocess
    import sys
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", _INTERRUPT_SCRIPT, mode],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert "interrupted" in out


def test_a_waiting_iterator_takes_a_whole_batch_in_one_hand_off_and_returns_the_rest():
    ch = Channel(4)
    got = []

    def consume():
        for v in ch:
            got.append(v)
            if len(got) == 3:
                break

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while not ch._recvq and time.monotonic() < deadline:   # the iterator parks on the empty channel
        time.sleep(0.001)
    assert ch._recvq
    assert ch.offer(list(range(100))) == 100   # more than the capacity, without waiting
    t.join(5)
    assert not t.is_alive()
    assert got == [0, 1, 2]
    assert [ch.receive(timeout=1)[0] for _ in range(97)] == list(range(3, 100))


def test_an_iterator_and_receive_on_one_channel_never_duplicate_or_lose_a_value():
    for _ in range(3):   # the race, where it exists, shows in about one run of three
        _iterate_and_receive_together(Channel(64), 200_000)


def _iterate_and_receive_together(ch, n):
    import sys

    got_iter, got_recv = [], []

    def by_iteration():
        for v in ch:
            got_iter.append(v)

    def by_receive():
        while True:
            v, ok = ch.receive()
            if not ok:
                return
            got_recv.append(v)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)   # switch threads as often as possible
    try:
        threads = [spawn(by_iteration), spawn(by_receive)]
        for i in range(n):
            ch.send(i)
        ch.close()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old)
    assert sorted(got_iter + got_recv) == list(range(n))
    assert got_iter == sorted(got_iter) and got_recv == sorted(got_recv)


def test_values_an_iterator_gives_back_reach_a_receiver_that_parked_meanwhile():
    ch = Channel(8)
    for i in range(3):
        ch.send(i)
    it = iter(ch)
    assert next(it) == 0   # the iterator took 0, 1, 2 as its batch
    got = []
    t = spawn(lambda: got.append(ch.receive(timeout=5)))
    wait_until(lambda: len(ch._recvq) == 1)   # parked: the buffer is empty
    it.close()   # 1 and 2 go back: the parked receiver gets 1
    t.join(5)
    assert got == [(1, True)]
    assert ch.receive(timeout=0) == (2, True)
