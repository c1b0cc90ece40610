"""Many short local-mode Contexts, each ended by a SIGTERM (or SIGINT, with SIG=INT) that strikes the main
thread at a random moment of its jobs: each must end with Terminated (KeyboardInterrupt), none may hang, and
the next Context must start and count as usual (nothing an interrupted task left set is in its way).

    python signal_storm_app.py TRIES

Prints ``TRIES ended`` and exits 0; a hang prints the stuck stack and exits 1 (faulthandler).
"""
import faulthandler
import os
import random
import signal
import sys
import threading

from gopark import Context

if __name__ == "__main__":
    tries = int(sys.argv[1])
    sig = signal.SIGINT if os.environ.get("SIG") == "INT" else signal.SIGTERM
    main = threading.main_thread().ident
    rng = random.Random(int(os.environ.get("SEED", "1")))
    ended = 0
    for _ in range(tries):
        timer = threading.Timer(rng.uniform(0.005, 0.08), signal.pthread_kill, (main, sig))
        faulthandler.dump_traceback_later(20, exit=True)
        try:
            with Context("local", quiet=True) as ctx:
                acc = ctx.accumulator(0)
                acc.add(1)
                assert ctx.parallelize(range(4), 2).count() == 4 and acc.value == 1
                timer.start()
                while True:
                    ctx.parallelize(range(400), 200).count()
        except (SystemExit, KeyboardInterrupt) as exc:
            if type(exc).__name__ not in ("Terminated", "KeyboardInterrupt"):
                raise
            ended += 1
        finally:
            if timer.ident is not None:
                timer.join()
            faulthandler.cancel_dump_traceback_later()
    print(f"{ended} ended")
