"""Monitor benchmarks: what watching for a stop click costs a training loop, inside a real IPython kernel.

The LossMonitor calls `handle_widget_events` once per step. In a kernel it looks at the kernel's shell
channel (at most every 0.1 s); here it is timed with `interval=0`, so that every call polls, and set against
two references measured in the same kernel in the same run: an empty Python function call, and one step of
the 02b toy GAN (the smallest model the kit trains). A full fit with the monitor is also timed with the poll
and with it switched off.

Each figure is printed last as `name: value unit (ratio R vs reference)`, the reference measured in this run.
"""
import os
import time

from jupyter_client.manager import start_new_kernel

CODE = r'''
import time, timeit, torch
from genmodels.viz import handle_widget_events
from genmodels.core import fit
import genmodels.monitor as gm
torch.set_num_threads(1)
n = 20_000
handle_widget_events(interval=0)  # the first call finds the kernel's channel
poll = min(timeit.repeat(lambda: handle_widget_events(interval=0), number=n, repeat=3)) / n
empty = min(timeit.repeat(lambda: None, number=n, repeat=3)) / n
G, D = torch.nn.Linear(4, 1), torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 1))
opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
def step(state, batch):
    fake = G(torch.randn(64, 4)); loss_D = (D(batch) - 1).square().mean() + D(fake.detach()).square().mean()
    opt_D.zero_grad(); loss_D.backward(); opt_D.step()
    loss_G = (D(fake) - 1).square().mean(); opt_G.zero_grad(); loss_G.backward(); opt_G.step()
    return {"loss_G": loss_G.detach(), "loss_D": loss_D.detach()}
def data():
    while True:
        yield torch.randn(64, 1)
def timed_fit(steps=1500):
    t = time.perf_counter(); fit(step, {}, data(), steps, [gm.LossMonitor(every=10_000, show=False)], progress=False)
    return (time.perf_counter() - t) / steps
toy = min(timeit.repeat(lambda: step({}, torch.randn(64, 1)), number=300, repeat=3)) / 300
with_poll = min(timed_fit() for _ in range(3))
real = gm.handle_widget_events
gm.handle_widget_events = lambda: 0
without_poll = min(timed_fit() for _ in range(3))
gm.handle_widget_events = real
print("RESULT", poll, empty, toy, with_poll, without_poll)
'''


def main():
    km, kc = start_new_kernel(kernel_name="python3", env={**os.environ, "MPLBACKEND": "Agg"})
    try:
        kc.execute(CODE)
        text, deadline = "", time.monotonic() + 600
        while "RESULT" not in text and time.monotonic() < deadline:
            msg = kc.get_iopub_msg(timeout=600)
            if msg["msg_type"] == "stream":
                text += msg["content"]["text"]
            elif msg["msg_type"] == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
        poll, empty, toy, with_poll, without_poll = (float(v) for v in text.split("RESULT", 1)[1].split()[:5])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print(f"handle_widget_events, polling the kernel's channel: {poll * 1e6:.2f} µs per call "
          f"(ratio {poll / empty:.1f} vs an empty call, {empty * 1e9:.0f} ns)")
    print(f"handle_widget_events: {poll * 1e6:.2f} µs per call (ratio {poll / toy:.4f} vs one toy GAN step, "
          f"{toy * 1e6:.0f} µs)")
    print(f"fit with the monitor, step time: {with_poll * 1e6:.0f} µs "
          f"(ratio {with_poll / without_poll:.3f} vs the same fit with the poll switched off, {without_poll * 1e6:.0f} µs)")


if __name__ == "__main__":
    main()
