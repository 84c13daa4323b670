"""faultproxy.py -- a TCP proxy that injects network faults, for tests.

Placed between Sluice and PostgreSQL (or between a client and Sluice), it
forwards bytes both ways until told otherwise.  It runs an asyncio loop on
its own thread; every control method is thread-safe and takes effect at once
for current connections and for new ones.

    p = FaultProxy("127.0.0.1", pg_port); p.start()   # listens on p.port
    p.delay(0.5)          # hold every chunk 0.5 s before forwarding it
    p.blackhole()         # stop forwarding (both ways); sockets stay open
    p.throttle(1000)      # at most ~1000 bytes/s each way
    p.cut_after(100)      # forward 100 more server->client bytes, then
                          #   close both sides (a cut inside a message)
    p.reset_all()         # close every current connection with a TCP RST
    p.refuse(True)        # new connections are reset at once
    p.normal()            # forward normally again (delay/blackhole/throttle off)
    p.stop()

"Upstream" is the target (the server side); "downstream" the connecting
side.  Counters: p.accepted, p.active, p.bytes_up, p.bytes_down.
"""

import asyncio
import socket
import struct
import threading


class FaultProxy:
    def __init__(self, target_host, target_port, listen_host="127.0.0.1", port=0):
        self.target = (target_host, target_port)
        self.listen = (listen_host, port)
        self.port = None
        self._loop = None
        self._thread = None
        self._server = None
        self._conns = set()
        self._delay = 0.0
        self._blackhole = False
        self._throttle = 0          # bytes/s, 0 = unlimited
        self._cut_after = None      # server->client bytes left before a cut
        self._refuse = False
        self._resume = None         # asyncio.Event, set when forwarding may go on
        self.accepted = 0
        self.bytes_up = 0
        self.bytes_down = 0

    # -- control (any thread) --------------------------------------------------

    def start(self):
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._resume = asyncio.Event()
            self._resume.set()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, *self.listen, reuse_address=True))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            # shutting down
            for t in asyncio.all_tasks(self._loop):
                t.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def _call(self, fn):
        done = threading.Event()

        def wrapper():
            try:
                fn()
            finally:
                done.set()
        self._loop.call_soon_threadsafe(wrapper)
        done.wait(5)

    def stop(self):
        if self._loop is None:
            return

        def shut():
            self._server.close()
            for c in list(self._conns):
                c.abort(rst=True)
            self._loop.stop()
        self._loop.call_soon_threadsafe(shut)
        self._thread.join(10)
        self._loop = None

    @property
    def active(self):
        return len(self._conns)

    def delay(self, seconds):
        self._call(lambda: setattr(self, "_delay", float(seconds)))

    def throttle(self, bytes_per_second):
        self._call(lambda: setattr(self, "_throttle", int(bytes_per_second)))

    def blackhole(self):
        def f():
            self._blackhole = True
            self._resume.clear()
        self._call(f)

    def normal(self):
        def f():
            self._blackhole = False
            self._delay = 0.0
            self._throttle = 0
            self._cut_after = None
            self._refuse = False
            self._resume.set()
        self._call(f)

    def cut_after(self, nbytes):
        self._call(lambda: setattr(self, "_cut_after", int(nbytes)))

    def refuse(self, on=True):
        self._call(lambda: setattr(self, "_refuse", bool(on)))

    def reset_all(self):
        def f():
            for c in list(self._conns):
                c.abort(rst=True)
        self._call(f)

    # -- the loop ----------------------------------------------------------------

    async def _handle(self, dreader, dwriter):
        self.accepted += 1
        if self._refuse:
            _rst(dwriter)
            return
        try:
            ureader, uwriter = await asyncio.wait_for(asyncio.open_connection(*self.target), 10)
        except (OSError, asyncio.TimeoutError):
            _rst(dwriter)
            return
        conn = _Conn(dwriter, uwriter)
        self._conns.add(conn)
        up = asyncio.ensure_future(self._pump(dreader, uwriter, conn, upstream=True))
        down = asyncio.ensure_future(self._pump(ureader, dwriter, conn, upstream=False))
        conn.tasks = (up, down)
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._conns.discard(conn)
            conn.abort(rst=conn.rst)
            for t in (up, down):
                t.cancel()

    async def _pump(self, reader, writer, conn, upstream):
        try:
            while True:
                data = await reader.read(65536 if not self._throttle else max(1, self._throttle // 10))
                if not data:
                    # orderly EOF: pass it on, then keep the other direction
                    try:
                        writer.write_eof()
                    except (OSError, RuntimeError):
                        pass
                    await asyncio.sleep(3600)
                    return
                while self._blackhole:
                    await self._resume.wait()
                if self._delay:
                    await asyncio.sleep(self._delay)
                if not upstream and self._cut_after is not None:
                    if len(data) >= self._cut_after:
                        writer.write(data[:self._cut_after])
                        self._cut_after = None
                        await writer.drain()
                        conn.rst = False
                        return  # closes both sides
                    self._cut_after -= len(data)
                writer.write(data)
                if upstream:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                await writer.drain()
                if self._throttle:
                    await asyncio.sleep(len(data) / self._throttle)
        except (ConnectionError, OSError, asyncio.CancelledError):
            return


class _Conn:
    def __init__(self, dwriter, uwriter):
        self.writers = (dwriter, uwriter)
        self.tasks = ()
        self.rst = False

    def abort(self, rst=False):
        for w in self.writers:
            if rst:
                _rst(w)
            else:
                try:
                    w.close()
                except (OSError, RuntimeError):
                    pass
        for t in self.tasks:
            t.cancel()


def _rst(writer):
    """Close with a TCP RST (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        writer.transport.abort() if sock is not None else writer.close()
    except (OSError, RuntimeError):
        pass
