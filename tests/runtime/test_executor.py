"""Batching, padding, runners and overload behaviour of the inference executor."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from rt_physio.clock import local_clock
from rt_physio.nn import LoadedModel
from rt_physio.runtime.batching import BatchQueue
from rt_physio.runtime.executor import InferenceExecutor, InferenceResult
from rt_physio.runtime.runners import BUCKETS, ShapeKey, TracedRunner, bucket_for, make_runner
from rt_physio.runtime.session import Window
from rt_physio.runtime.tracing import Trace


def _window(session: str, seq: int, shapes: dict[str, tuple[int, int]], seed: int) -> Window:
    rng = np.random.default_rng(seed)
    inputs = {m: rng.normal(0, 0.3, (c, n, 200)).astype(np.float32) for m, (c, n) in shapes.items()}
    return Window(session, seq, 0.0, 5.0, inputs, Trace(cut=local_clock()))  # type: ignore[arg-type]


def _eager_probs(model: LoadedModel, window: Window) -> np.ndarray:
    with torch.inference_mode():
        kwargs = {m: torch.from_numpy(x)[None] for m, x in window.inputs.items()}
        return torch.sigmoid(model.module(**kwargs))[0].numpy()


def _probs(result: InferenceResult) -> np.ndarray:
    return np.array(list(result.probabilities.values()))


@pytest.mark.parametrize("backend", ["eager", "traced"])
def test_batched_windows_equal_single_windows(tiny_model: LoadedModel, backend: str) -> None:
    ex = InferenceExecutor(tiny_model, device="cpu", backend=backend, max_wait_s=0.2)  # type: ignore[arg-type]
    windows = [_window(f"s{i}", 0, {"eeg": (14, 5), "ecg": (2, 5)}, seed=i) for i in range(5)]
    # every session is known to the queue before the batch is taken, so the five go as one batch
    futures = [ex.submit(w) for w in windows]
    ex.start()
    results = [f.result(timeout=60) for f in futures]
    ex.stop()
    assert ex.batches == 1
    assert all(w.trace.batch_size == 5 for w in windows)
    for w, r in zip(windows, results, strict=True):
        np.testing.assert_allclose(_probs(r), _eager_probs(tiny_model, w), atol=1e-5)


def test_padding_rows_do_not_change_real_rows(tiny_model: LoadedModel) -> None:
    runner = make_runner(tiny_model.module, torch.device("cpu"), "traced")
    assert runner.pads
    key = ShapeKey(("eeg",), (4,), 3)
    rng = np.random.default_rng(1)
    real = torch.from_numpy(rng.normal(0, 0.3, (3, 4, 3, 200)).astype(np.float32))
    for padding in (real[-1:].repeat(1, 1, 1, 1), torch.full((1, 4, 3, 200), 50.0)):
        padded = torch.cat([real, padding])
        out = runner(key, [padded])[:3]
        alone = torch.cat([runner(key, [real[i:i + 1]]) for i in range(3)])
        torch.testing.assert_close(out, alone, atol=1e-5, rtol=0)


def test_traced_runner_matches_eager(tiny_model: LoadedModel) -> None:
    eager = make_runner(tiny_model.module, torch.device("cpu"), "eager")
    traced = make_runner(tiny_model.module, torch.device("cpu"), "traced")
    for key, shapes in [(ShapeKey(("eeg", "ecg"), (14, 2), 5), [(14, 5), (2, 5)]),
                        (ShapeKey(("ecg",), (1,), 5), [(1, 5)]), (ShapeKey(("eeg",), (20,), 5), [(20, 5)])]:
        for batch in (1, 4):
            xs = [torch.randn(batch, c, n, 200) * 0.3 for c, n in shapes]
            torch.testing.assert_close(traced(key, xs), eager(key, xs), atol=1e-4, rtol=0)
    # every shape really was traced (a failed build falls back to eager, which would make this test vacuous)
    assert isinstance(traced, TracedRunner)
    assert traced._built and all(fn is not None for fn in traced._built.values())


def test_different_shapes_are_never_mixed(tiny_model: LoadedModel) -> None:
    ex = InferenceExecutor(tiny_model, device="cpu", backend="traced", max_wait_s=0.05)
    shapes = [{"eeg": (14, 5), "ecg": (2, 5)}, {"eeg": (14, 5)}, {"ecg": (1, 5)}, {"eeg": (20, 5), "ecg": (1, 5)}]
    windows = [_window(f"s{i}", 0, shapes[i % 4], seed=i) for i in range(12)]
    futures = [ex.submit(w) for w in windows]
    ex.start()
    results = [f.result(timeout=120) for f in futures]
    ex.stop()
    assert ex.batches >= 4
    for w, r in zip(windows, results, strict=True):
        np.testing.assert_allclose(_probs(r), _eager_probs(tiny_model, w), atol=1e-5)


def test_a_new_shape_stalls_others_for_at_most_one_build(tiny_model: LoadedModel) -> None:
    ex = InferenceExecutor(tiny_model, device="cpu", backend="traced", max_wait_s=0.0)
    ex.warm_up({"eeg": (14, 5, 200), "ecg": (2, 5, 200)})
    ex.start()
    steady: list[float] = []
    stop = threading.Event()

    def session_a() -> None:
        seq = 0
        while not stop.is_set():
            w = _window("a", seq, {"eeg": (14, 5), "ecg": (2, 5)}, seed=seq)
            t0 = time.perf_counter()
            ex.submit(w).result(timeout=60)
            steady.append(time.perf_counter() - t0)
            seq += 1

    thread = threading.Thread(target=session_a)
    thread.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    ex.submit(_window("b", 0, {"eeg": (20, 5), "ecg": (1, 5)}, seed=99)).result(timeout=60)
    first_b = time.perf_counter() - t0
    ex.submit(_window("b", 1, {"eeg": (20, 5), "ecg": (1, 5)}, seed=98)).result(timeout=60)
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=60)
    ex.stop()
    # B's shape was built exactly once, on its first window
    b_key = ShapeKey(("eeg", "ecg"), (20, 1), 5)
    assert [shape for shape in ex.runner.built_shapes if shape[0] == b_key] == [(b_key, 1)]  # type: ignore[attr-defined]
    # session A was held up by at most that one build (plus a forward pass of its own)
    assert max(steady) <= first_b + 3 * float(np.median(steady)) + 0.05


def test_overload_drops_the_oldest_and_counts_it(tiny_model: LoadedModel) -> None:
    ex = InferenceExecutor(tiny_model, device="cpu", backend="eager", max_queue=3)
    futures = [ex.submit(_window(f"s{i}", i, {"eeg": (4, 2)}, seed=i)) for i in range(5)]
    assert ex.dropped == 2
    assert futures[0].cancelled() and futures[1].cancelled()
    ex.start()
    assert all(f.result(timeout=60) is not None for f in futures[2:])
    ex.stop()


def test_single_session_does_not_pay_the_batching_wait(tiny_model: LoadedModel) -> None:
    ex = InferenceExecutor(tiny_model, device="cpu", backend="eager", max_wait_s=0.5)
    ex.start()
    w = _window("only", 0, {"eeg": (4, 2)}, seed=0)
    ex.submit(w).result(timeout=60)
    w2 = _window("only", 1, {"eeg": (4, 2)}, seed=1)
    ex.submit(w2).result(timeout=60)
    ex.stop()
    assert w2.trace.infer_start - w2.trace.cut < 0.25


def test_batch_queue_oldest_key_first_and_bounded() -> None:
    q: BatchQueue[str, int] = BatchQueue(4, local_clock)
    now = local_clock()
    q.put("b", "s1", 1, now + 0.001)
    q.put("a", "s2", 2, now)
    q.put("b", "s3", 3, now + 0.002)
    assert q.take(8, 0.0, 0.1) == ("a", [2])
    assert q.take(8, 0.0, 0.1) == ("b", [1, 3])
    for i in range(6):
        q.put("c", f"s{i}", i, now + i)
    assert q.dropped == 2
    assert q.take(8, 0.0, 0.1) == ("c", [2, 3, 4, 5])
    assert q.take(8, 0.0, 0.01) is None


def test_buckets() -> None:
    assert [bucket_for(n, 64) for n in (1, 2, 3, 5, 9, 33, 64, 65)] == [1, 2, 4, 8, 16, 64, 64, 65]
    assert bucket_for(5, 4) == 5
    assert BUCKETS[-1] == 64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replay_matches_eager_on_the_same_gpu(tiny_model: LoadedModel) -> None:
    device = torch.device("cuda")
    eager = make_runner(tiny_model.module, device, "eager")
    graphs = make_runner(tiny_model.module, device, "cuda-graph")
    key = ShapeKey(("eeg", "ecg"), (14, 2), 5)
    for batch in (1, 8):
        xs = [torch.randn(batch, 14, 5, 200, device=device) * 0.3, torch.randn(batch, 2, 5, 200, device=device)]
        first = graphs(key, xs)
        again = graphs(key, [x * 1.1 for x in xs])  # replay with new inputs copied into the static buffers
        torch.testing.assert_close(first, eager(key, xs), atol=1e-4, rtol=0)
        torch.testing.assert_close(again, eager(key, [x * 1.1 for x in xs]), atol=1e-4, rtol=0)




def _quality_window(session: str, seq: int, seed: int) -> Window:
    """A window with data to score, as Session._cut makes it: (C, n) model units, kept for quality scoring."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (4, 400)).astype(np.float32)
    window = Window(session, seq, 0.0, 2.0, {"eeg": x.reshape(4, 2, 200)}, Trace(cut=local_clock()),
                    quality_inputs=[("eeg", x, None)])  # type: ignore[arg-type]
    return window


def test_a_lone_session_runs_to_completion_on_the_submitting_thread(tiny_model: LoadedModel) -> None:
    seen: list[tuple[int, dict[str, float]]] = []

    def on_result(window: Window, result: InferenceResult) -> None:
        # what the engine does before publishing: the quality is scored meanwhile on the quality thread
        seen.append((threading.get_ident(), dict(window.wait_quality(timeout=5.0))))

    ex = InferenceExecutor(tiny_model, on_result, device="cpu", backend="traced", threads=1, inline=True)
    ex.start()
    try:
        w = _quality_window("only", 0, seed=0)
        future = ex.submit(w)
        assert future.done()  # resolved before submit returned: no hand-over to the executor thread
        np.testing.assert_allclose(_probs(future.result()), _eager_probs(tiny_model, w), atol=1e-5)
        assert seen[0][0] == threading.get_ident()
        assert 0.0 <= seen[0][1]["eeg"] <= 1.0  # scored by the quality thread, while this thread ran the model
        assert w.quality_inputs == []  # released once scored
        assert ex.inline_batches == 1 and ex.batches == 1
        # a second session sending the same shape: batching can help now, so both go through the executor thread
        futures = [ex.submit(_quality_window(s, 1, seed=i)) for i, s in enumerate(("other", "only"))]
        assert all(f.result(timeout=60) is not None for f in futures)
        assert ex.inline_batches == 1
        assert seen[-1][0] != threading.get_ident()
    finally:
        ex.stop()


def test_run_to_completion_can_be_turned_off(tiny_model: LoadedModel) -> None:
    threads: list[int] = []
    ex = InferenceExecutor(tiny_model, lambda w, r: threads.append(threading.get_ident()), device="cpu",
                           backend="eager", threads=1, inline=False)
    ex.start()
    try:
        ex.submit(_quality_window("only", 0, seed=0)).result(timeout=60)
    finally:
        ex.stop()
    assert ex.inline_batches == 0 and threads and threads[0] != threading.get_ident()


def test_batch_queue_says_when_an_item_runs_alone() -> None:
    q: BatchQueue[str, int] = BatchQueue(4, local_clock)
    then = local_clock() - 5.0
    assert q.runs_alone("a", "s1", then)
    assert q.runs_alone("a", "s1", then)  # the same sender again
    assert not q.runs_alone("a", "s2", then)  # s1 sends this shape too: a batch could form
    assert q.runs_alone("b", "s2", then)  # another shape has its own senders
    q.put("c", "s3", 1, then)
    assert not q.runs_alone("b", "s2", then)  # something is queued: it goes first
    assert q.take(8, 0.0, 0.1) == ("c", [1])
    q.sender_ttl = 1.0  # s1 last sent 5 s ago: a sender that went quiet no longer counts
    assert q.runs_alone("a", "s2", local_clock())
    q.close()
    assert not q.runs_alone("a", "s2", local_clock())
