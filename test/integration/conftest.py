"""conftest.py -- fixtures of the Sluice integration suite (pytest).

What a test gets:

  pg        (session)  one throwaway PostgreSQL 15 cluster per pytest worker,
                       started by scripts/pg-temp.sh; see class PG.  After each
                       test it is brought back up if the test stopped or froze
                       it.
  sluice    (function) a factory: sluice(config) starts a Sluice instance from
                       a config dict (or libconfig text) and waits until it
                       accepts connections; see class Sluice.  Every instance
                       is stopped after the test, and the test fails if its
                       stderr holds a sanitizer report (make asan-test).
  proxy     (function) a factory: proxy(port) starts a fault proxy in front of
                       127.0.0.1:port; see faultproxy.py.
  tdir      (function) a short per-test directory (unix socket paths must stay
                       under 108 bytes, so pytest's tmp_path is too long).

Environment:
  BUILD        build directory holding sluice and the helper programs
               (default build)
  IT_KEEP=1    keep the temporary directory (logs) after the run
"""

import os
import pathlib
import shutil
import sys
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from faultproxy import FaultProxy  # noqa: E402
from sluicetest import PG, Sluice, sanitizer_report  # noqa: E402

BUILD = pathlib.Path(os.environ.get("BUILD", "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
SLUICE_BIN = BUILD / "sluice"

# Every password any test uses; none may ever reach a Sluice log.
PASSWORDS = ("app_pw", "plain_pw", "md5_pw", "wrong_pw", "some_pw", "admin_secret_pw",
             "mon_secret_pw", "password=")

# Nothing from the caller's libpq environment may redirect the tests.
for _v in ("PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGOPTIONS "
           "PGSSLMODE PGSERVICE PGSERVICEFILE PGTZ PGDATESTYLE PGAPPNAME PGCONNECT_TIMEOUT "
           "PGTARGETSESSIONATTRS PGSSLROOTCERT PGSSLCERT PGSSLKEY PGCLIENTENCODING").split():
    os.environ.pop(_v, None)
os.environ["PGCONNECT_TIMEOUT"] = "10"


def pytest_configure(config):
    # 1,000 pgbench clients need descriptors.
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory):
    """A short temporary directory for this pytest worker."""
    wid = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    d = pathlib.Path(tempfile.mkdtemp(prefix=f"slit-{wid}-", dir=os.environ.get("TMPDIR", "/tmp")))
    d.chmod(0o755)  # the cluster's OS user must reach its directory
    yield d
    if os.environ.get("IT_KEEP") == "1":
        print(f"\n# logs kept in {d}", file=sys.stderr)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(base_dir):
    if not SLUICE_BIN.exists():
        pytest.exit(f"{SLUICE_BIN} not found (build with 'make' first)", returncode=1)
    cluster = PG(ROOT, base_dir / "pg")
    cluster.start()
    yield cluster
    cluster.destroy()


_counter = [0]


@pytest.fixture
def tdir(base_dir, request):
    _counter[0] += 1
    d = base_dir / f"t{_counter[0]}"
    d.mkdir()
    d.chmod(0o755)
    (d / "NAME").write_text(request.node.nodeid + "\n")
    return d


@pytest.fixture
def sluice(pg, tdir, request):
    """Factory: sluice(config, name='main') -> a running Sluice."""
    started = []

    def start(config=None, name="main", wait=True, **kw):
        inst = Sluice(SLUICE_BIN, pg, tdir / name, config, **kw)
        started.append(inst)
        if wait:
            inst.start()
        return inst

    yield start
    reports = []
    for inst in started:
        inst.stop_quietly()
        rep = sanitizer_report(inst.stderr_path)
        if rep:
            reports.append(f"{inst.name}: sanitizer report in stderr: {rep}")
        for path in (inst.log_path, inst.stderr_path, inst.dir / "stdout"):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            leaked = [pw for pw in PASSWORDS if pw in text]
            if leaked:
                reports.append(f"{inst.name}: {path.name} holds a password ({', '.join(leaked)})")
    if reports:
        pytest.fail("\n".join(reports), pytrace=False)


@pytest.fixture(scope="session")
def build_dir():
    """The build directory (helper programs it_concurrent, it_extended)."""
    return BUILD


@pytest.fixture
def proxy():
    """Factory: proxy(target_port, target_host='127.0.0.1') -> FaultProxy."""
    made = []

    def make(target_port, target_host="127.0.0.1"):
        p = FaultProxy(target_host, target_port)
        p.start()
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


@pytest.fixture(autouse=True)
def _pg_healthy(request):
    """Whatever a test did to the shared cluster, the next test finds it up,
    without backends left from the test (they exit asynchronously)."""
    yield
    if "pg" in request.fixturenames:
        cluster = request.getfixturevalue("pg")
        cluster.ensure_up()
        left = cluster.wait_quiet()
        if left:
            with open(cluster.dir.parent / "leftover-backends.log", "a") as f:
                f.write(f"{request.node.nodeid}: {left}\n")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        # Attach Sluice's log tail to a failure report.
        d = item.funcargs.get("tdir")
        if d is not None:
            for log in sorted(pathlib.Path(d).glob("*/sluice.log")) + sorted(pathlib.Path(d).glob("*/stderr")):
                try:
                    tail = log.read_text(errors="replace").splitlines()[-25:]
                except OSError:
                    continue
                rep.sections.append((f"{log.parent.name}/{log.name} (last 25 lines)", "\n".join(tail)))
