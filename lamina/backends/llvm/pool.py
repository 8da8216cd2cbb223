"""LLVM IR of the runtime's native thread pool: spinning workers that split kernel trips.

Why native: a kernel split over Python threads pays a queue put, a futex
wake-up and a GIL hand-off per call, and the Linux scheduler often wakes the
worker on the caller's own core, so small kernels (20-100 us) ran slower on
two threads than on one. These workers never touch Python: they spin a
little on a generation counter after each job (so the next kernel of a step
starts at once), then sleep on a futex.

One pool is a 192-byte state block (``LAYOUT``), allocated by the runtime and
passed to every function, so a forked child simply makes a new one:

* ``ptr lamina_pool_worker(ptr pool)`` — a pthread start routine;
* ``void lamina_pool_run(ptr pool, ptr fn, ptr args, i64 trips, i64 n)`` — run
  ``fn(args, lo, hi)`` over ``n`` equal chunks of ``[0, trips)``; the caller
  works too and returns when every chunk is done. A second caller while a job
  runs (another Python thread) runs its kernel inline instead of waiting;
* ``void lamina_pool_pfor(ptr pool, ptr fn, ptr args, i64 trips)`` — the same
  with the pool's chunk count (the replay driver's ``pfor``);
* ``void lamina_pool_stop(ptr pool)`` — wake every worker and make it return.

Chunks are claimed from a 64-bit word holding (generation << 32 | next chunk)
with compare-and-swap, so a worker that wakes late for a finished job can
never take a chunk of the next one with stale job fields.
"""

from __future__ import annotations

import platform

# Byte offsets in the state block.
LAYOUT = {
    "gen": 0,  # i32, the futex word: bumped once per job (and on stop)
    "stop": 4,  # i32
    "sleepers": 8,  # i32, workers in (or about to enter) futex_wait
    "busy": 12,  # i32, a job is running
    "fn": 16,  # ptr
    "args": 24,  # ptr
    "trips": 32,  # i64
    "n": 40,  # i64, chunks of the running job
    "spin": 48,  # i64, pause iterations before a worker sleeps
    "chunks": 56,  # i64, chunks of a pfor job (a few per thread, see native_pool)
    "claim": 64,  # i64, (gen << 32) | next chunk; own cache line
    "left": 128,  # i64, chunks not finished; own cache line
}
STATE_BYTES = 192

WAIT_SPIN = 512  # pause iterations the caller spins on unfinished chunks before yielding
_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}
_FUTEX_WAIT_PRIVATE = 128
_FUTEX_WAKE_PRIVATE = 129


def supported(machine: str | None = None) -> bool:
    """Whether this host has the futex system call number and a pause hint we know."""
    return platform.system() == "Linux" and (machine or platform.machine()).lower() in _FUTEX


def _pause(machine: str) -> tuple[str, str]:
    if machine in ("x86_64", "amd64"):
        return "declare void @llvm.x86.sse2.pause()", "call void @llvm.x86.sse2.pause()"
    return "declare void @llvm.aarch64.hint(i32)", "call void @llvm.aarch64.hint(i32 1)"


def emit_pool(machine: str | None = None) -> str:
    """The pool's LLVM IR for this host (see the module docstring)."""
    machine = (machine or platform.machine()).lower()
    if not supported(machine):
        raise RuntimeError(f"native thread pool: unsupported host {platform.system()} "
                           f"{machine}")
    decl_pause, pause = _pause(machine)
    sys_futex = _FUTEX[machine]
    futex = f"call i64 (i64, ...) @syscall(i64 {sys_futex}, ptr %p"
    wake_all = f"{futex}, i64 {_FUTEX_WAKE_PRIVATE}, i64 2147483647)"

    def at(field: str, name: str) -> str:
        return f"%{name} = getelementptr inbounds i8, ptr %p, i64 {LAYOUT[field]}"

    return f"""
{decl_pause}
declare i64 @syscall(i64, ...)
declare i32 @sched_yield()

define internal void @lamina_pool_work(ptr %p, i32 %g) nounwind {{
entry:
  {at("claim", "claim")}
  {at("fn", "fnp")}
  {at("args", "argsp")}
  {at("trips", "tripsp")}
  {at("n", "np")}
  {at("left", "leftp")}
  br label %loop
loop:
  %done = phi i64 [0, %entry], [%done1, %ran], [%done, %retry]
  %c = load atomic i64, ptr %claim acquire, align 8
  %cg64 = lshr i64 %c, 32
  %cg = trunc i64 %cg64 to i32
  %same = icmp eq i32 %cg, %g
  br i1 %same, label %fields, label %finish
fields:
  %fn = load atomic ptr, ptr %fnp monotonic, align 8
  %args = load atomic ptr, ptr %argsp monotonic, align 8
  %trips = load atomic i64, ptr %tripsp monotonic, align 8
  %n = load atomic i64, ptr %np monotonic, align 8
  %idx = and i64 %c, 4294967295
  %more = icmp ult i64 %idx, %n
  br i1 %more, label %take, label %finish
take:
  %c1 = add i64 %c, 1
  %pair = cmpxchg ptr %claim, i64 %c, i64 %c1 acq_rel acquire, align 8
  %ok = extractvalue {{ i64, i1 }} %pair, 1
  br i1 %ok, label %run, label %retry
retry:
  br label %loop
run:
  %lo0 = mul i64 %trips, %idx
  %lo = udiv i64 %lo0, %n
  %idx1 = add i64 %idx, 1
  %hi0 = mul i64 %trips, %idx1
  %hi = udiv i64 %hi0, %n
  call void %fn(ptr %args, i64 %lo, i64 %hi)
  br label %ran
ran:
  %done1 = add i64 %done, 1
  br label %loop
finish:
  %any = icmp ne i64 %done, 0
  br i1 %any, label %report, label %out
report:
  %old = atomicrmw sub ptr %leftp, i64 %done release, align 8
  br label %out
out:
  ret void
}}

define ptr @lamina_pool_worker(ptr %p) nounwind {{
entry:
  {at("stop", "stopp")}
  {at("sleepers", "sleepp")}
  {at("spin", "spinp")}
  br label %wait
wait:
  ; Generation 0 is never a job: a worker that starts late still sees the jobs
  ; (or the stop) published before it ran.
  %seen = phi i32 [0, %entry], [%g, %work]
  %limit = load atomic i64, ptr %spinp monotonic, align 8
  br label %spin
spin:
  %i = phi i64 [0, %wait], [%i1, %spin_next]
  %gs = load atomic i32, ptr %p acquire, align 4
  %changed = icmp ne i32 %gs, %seen
  br i1 %changed, label %got, label %spin_next
spin_next:
  {pause}
  %i1 = add i64 %i, 1
  %again = icmp ult i64 %i1, %limit
  br i1 %again, label %spin, label %sleep
sleep:
  %s0 = atomicrmw add ptr %sleepp, i32 1 seq_cst, align 4
  %gz = load atomic i32, ptr %p seq_cst, align 4
  %unchanged = icmp eq i32 %gz, %seen
  br i1 %unchanged, label %futex_wait, label %woke
futex_wait:
  %seen64 = zext i32 %seen to i64
  %r = {futex}, i64 {_FUTEX_WAIT_PRIVATE}, i64 %seen64, ptr null)
  br label %woke
woke:
  %s1 = atomicrmw sub ptr %sleepp, i32 1 seq_cst, align 4
  %gw = load atomic i32, ptr %p acquire, align 4
  %changed2 = icmp ne i32 %gw, %seen
  br i1 %changed2, label %got, label %sleep
got:
  %g = phi i32 [%gs, %spin], [%gw, %woke]
  %stop = load atomic i32, ptr %stopp acquire, align 4
  %stopping = icmp ne i32 %stop, 0
  br i1 %stopping, label %exit, label %work
work:
  call void @lamina_pool_work(ptr %p, i32 %g)
  br label %wait
exit:
  ret ptr null
}}

define internal void @lamina_pool_publish(ptr %p) nounwind {{
entry:
  {at("sleepers", "sleepp")}
  %s = load atomic i32, ptr %sleepp seq_cst, align 4
  %some = icmp ne i32 %s, 0
  br i1 %some, label %wake, label %out
wake:
  %r = {wake_all}
  br label %out
out:
  ret void
}}

define void @lamina_pool_run(ptr %p, ptr %fn, ptr %args, i64 %trips, i64 %n) nounwind {{
entry:
  {at("busy", "busyp")}
  %small = icmp ule i64 %n, 1
  br i1 %small, label %inline, label %try
try:
  %pair = cmpxchg ptr %busyp, i32 0, i32 1 acquire monotonic, align 4
  %mine = extractvalue {{ i32, i1 }} %pair, 1
  br i1 %mine, label %publish, label %inline
inline:
  call void %fn(ptr %args, i64 0, i64 %trips)
  ret void
publish:
  {at("fn", "fnp")}
  {at("args", "argsp")}
  {at("trips", "tripsp")}
  {at("n", "np")}
  {at("left", "leftp")}
  {at("claim", "claim")}
  store atomic ptr %fn, ptr %fnp monotonic, align 8
  store atomic ptr %args, ptr %argsp monotonic, align 8
  store atomic i64 %trips, ptr %tripsp monotonic, align 8
  store atomic i64 %n, ptr %np monotonic, align 8
  store atomic i64 %n, ptr %leftp monotonic, align 8
  %g0 = load atomic i32, ptr %p monotonic, align 4
  %g = add i32 %g0, 1
  %g64 = zext i32 %g to i64
  %c = shl i64 %g64, 32
  store atomic i64 %c, ptr %claim release, align 8
  store atomic i32 %g, ptr %p seq_cst, align 4
  call void @lamina_pool_publish(ptr %p)
  call void @lamina_pool_work(ptr %p, i32 %g)
  br label %wait
wait:
  %i = phi i64 [0, %publish], [%i1, %pause], [%i1, %yield]
  %left = load atomic i64, ptr %leftp acquire, align 8
  %finished = icmp eq i64 %left, 0
  br i1 %finished, label %done, label %slow
slow:
  %i1 = add i64 %i, 1
  ; the caller spins a little while the last chunks finish, then yields its core
  ; (on a busy machine the worker it waits for may need it)
  %patient = icmp ult i64 %i, {WAIT_SPIN}
  br i1 %patient, label %pause, label %yield
pause:
  {pause}
  br label %wait
yield:
  %y = call i32 @sched_yield()
  br label %wait
done:
  store atomic i32 0, ptr %busyp release, align 4
  ret void
}}

define void @lamina_pool_pfor(ptr %p, ptr %fn, ptr %args, i64 %trips) nounwind {{
entry:
  {at("chunks", "chunksp")}
  %chunks = load atomic i64, ptr %chunksp monotonic, align 8
  %fewer = icmp ult i64 %trips, %chunks
  %n = select i1 %fewer, i64 %trips, i64 %chunks
  call void @lamina_pool_run(ptr %p, ptr %fn, ptr %args, i64 %trips, i64 %n)
  ret void
}}

define void @lamina_pool_stop(ptr %p) nounwind {{
entry:
  {at("stop", "stopp")}
  store atomic i32 1, ptr %stopp seq_cst, align 4
  %g = atomicrmw add ptr %p, i32 1 seq_cst, align 4
  %r = {wake_all}
  ret void
}}
"""
