"""Run many sequential fits in lockstep, so that each round of messages serves all of them at once.

A federated fit asks the sites for statistics at each step, and each ask is a round trip. Fits
that do not depend on each other (the univariable models, the candidate drops of a backward
step, the folds of a cross-validation) run here each in its own thread against a shared
``Statistics``-like function; a request blocks until every live fit has asked (or finished), then
all the pending requests go out together as one batch, and each fit gets its own answer. The fits
themselves stay plain sequential code (``models/federated_logit.py``, ``models/federated_lasso.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

R = TypeVar("R")
Batch = Callable[[list[Any]], list[Any]]  # the requests of one round -> their answers, in order


class Lockstep(Generic[R]):
    """Coordinates fits that each call ``ask(request)``; ``batch`` answers every pending request of a round together.

    ``ask`` outside ``run`` (one sequential fit) sends its request alone.
    """

    def __init__(self, batch: Batch) -> None:
        self._batch = batch
        self._lock = threading.Condition()
        self._pending: dict[int, Any] = {}
        self._answers: dict[int, Any] = {}
        self._alive = 0
        self._running = False

    def ask(self, request: Any) -> Any:
        """Called from a fit's thread: block until this round's batch is answered; return this request's answer (or raise its error)."""
        me = threading.get_ident()
        with self._lock:
            running = self._running
        if not running:  # asked outside ``run`` (a lone sequential step): its own round
            return self._batch([request])[0]
        with self._lock:
            self._pending[me] = request
            self._lock.notify_all()
            while me not in self._answers:
                self._lock.wait()
            answer = self._answers.pop(me)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def run(self, fits: Sequence[Callable[[], R]]) -> list[R | Exception]:
        """Run each fit in its own thread; return each one's result, or the exception it raised (one fit's failure stops no other)."""
        results: list[R | Exception] = [RuntimeError("not run")] * len(fits)

        def body(i: int, fit: Callable[[], R]) -> None:
            try:
                results[i] = fit()
            except Exception as err:  # handed back to the caller, which names it (a separated fit, a failed site)
                results[i] = err
            finally:
                with self._lock:
                    self._alive -= 1
                    self._lock.notify_all()

        with self._lock:
            self._alive, self._running = len(fits), True
        threads = [threading.Thread(target=body, args=(i, fit), daemon=True) for i, fit in enumerate(fits)]
        for thread in threads:
            thread.start()
        while True:
            with self._lock:
                while self._alive and len(self._pending) < self._alive:
                    self._lock.wait()
                if not self._alive:
                    break
                pending, self._pending = self._pending, {}
            try:
                answers = self._batch(list(pending.values()))
            except Exception as err:  # the round failed (a site stopped answering): every waiting fit gets the error
                answers = [err] * len(pending)
            with self._lock:
                self._answers.update(dict(zip(pending, answers)))
                self._lock.notify_all()
        for thread in threads:
            thread.join()
        self._running = False
        return results
