"""Builds every image of docker-compose.yml, runs the composed stack on a container engine and
drives one task through it. Run it through ./compose-smoke, which provides podman-compose.

The engine is a private rootful Podman (its Docker-compatible API on a socket of the state
directory, where the sandbox service reaches it as its Docker), configured like the one
`cargo autonoma test` starts: all of its state lives in the state directory, nothing under
/etc is read or changed.

Where a public base image cannot be pulled, a stand-in is built locally under the same name
(--stand-ins skips the pull attempt): Debian from debootstrap, and the Rust, Node.js,
PostgreSQL, moto and nginx images from it (infra/smoke/stand-ins/). The Debian stand-in carries
the host's local certificate authorities (/usr/local/share/ca-certificates), so builds behind a
TLS-inspecting proxy reach crates.io, npm and PyPI; such images are for this machine only. The
project's own images are always built from their real Dockerfiles.

Podman runs no health checks by itself without systemd, and podman-compose before Podman 4.6
ignores `condition: service_healthy`, so this script starts the services itself, in the order
docker-compose.yml's depends_on gives, running each health check until it passes, as
`docker compose up --wait` would.
"""

import argparse
import base64
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
STAND_INS = Path(__file__).resolve().parent / "stand-ins"
PROJECT = "autonoma"
COMPOSE_FILE = ROOT / "docker-compose.yml"
# How long one service may take to become healthy, one task to finish, one build to run.
HEALTH_TIMEOUT = 240
TASK_TIMEOUT = 60
BUILD_TIMEOUT = 90 * 60
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


def say(message):
    print(f"==> {message}", flush=True)


class SmokeError(Exception):
    pass


class Podman:
    """A rootful Podman whose configuration, storage and run state live under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.socket = root / "podman.sock"
        self.service = None
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("tmp", "networks"):
            (root / sub).mkdir(exist_ok=True)
        # runc fails to raise limits above this process's own hard limits.
        nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1_048_576)
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        nproc = 32_768 if nproc == resource.RLIM_INFINITY else min(nproc, 32_768)
        (root / "containers.conf").write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            # Builds (apt, crates.io, npm) use the host's network: the host's resolver need not
            # answer a bridge network. The stack's containers join the compose network.
            'netns = "host"\n\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'lock_type = "file"\n'
            'events_logger = "file"\n'
            f"events_logfile_path = {json.dumps(str(root / 'events.log'))}\n"
            f"tmp_dir = {json.dumps(str(root / 'tmp'))}\n\n"
            "[network]\n"
            # netavark with aardvark-dns: containers find each other by service name.
            'network_backend = "netavark"\n'
            f"network_config_dir = {json.dumps(str(root / 'networks'))}\n"
        )
        (root / "storage.conf").write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f"graphroot = {json.dumps(str(root / 'storage'))}\n"
            f"runroot = {json.dumps(str(root / 'run'))}\n"
        )
        self.env = dict(
            os.environ,
            CONTAINERS_CONF=str(root / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(root / "storage.conf"),
        )

    def run(self, *args, check=True, capture=True, timeout=None, input=None):
        result = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=capture,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip() if capture else ""
            raise SmokeError(f"podman {' '.join(args)} failed ({result.returncode}): {detail}")
        return result

    def start_api(self):
        """Starts Podman's Docker-compatible API, the engine the sandbox service drives."""
        if self.socket.exists():
            self.socket.unlink()
        log = open(self.root / "service.log", "w")
        self.service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        (self.root / "service.pid").write_text(str(self.service.pid))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.service.poll() is not None:
                raise SmokeError(f"podman system service exited; see {self.root / 'service.log'}")
            if self.socket.exists() and api_ping(self.socket):
                return
            time.sleep(0.2)
        raise SmokeError(f"podman system service did not answer on {self.socket} within 60 s")

    def stop_api(self):
        """Stops the API service this run or a kept one (--keep) started."""
        pid_file = self.root / "service.pid"
        if self.service is None and not pid_file.exists():
            return
        pid = self.service.pid if self.service else int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pid_file.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.service is not None:
                if self.service.poll() is not None:
                    break
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)

    def has_image(self, ref):
        return self.run("image", "exists", ref, check=False).returncode == 0


def api_ping(path: Path) -> bool:
    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(2)
            self.sock.connect(str(path))

    try:
        connection = UnixConnection("localhost")
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except OSError:
        return False


# --- the compose file ----------------------------------------------------------------------


def compose_config(compose, env):
    """docker-compose.yml as the compose tool resolves it (anchors merged, variables set)."""
    result = subprocess.run(
        [*compose, "config"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SmokeError(f"{' '.join(compose)} config failed: {result.stderr.strip()}")
    return yaml.safe_load(result.stdout)


def start_order(services):
    """Service names, each after everything it depends on."""
    order, seen = [], set()

    def visit(name, path):
        if name in seen:
            return
        if name in path:
            raise SmokeError(f"depends_on cycle through {name}")
        for dependency in depends_on(services[name]):
            visit(dependency, path | {name})
        seen.add(name)
        order.append(name)

    for name in services:
        visit(name, frozenset())
    return order


def depends_on(service):
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def normalize(ref):
    """An image reference as Podman stores it."""
    name = ref.split("@")[0]
    first = name.split("/")[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def base_images(services):
    """Every public image the stack needs: the services' `image:` and the FROM lines of every
    Dockerfile they are built from (stages and ARG defaults resolved)."""
    refs = set()
    for service in services.values():
        build = service.get("build")
        if build:
            context = Path(build.get("context", ".")) if isinstance(build, dict) else Path(build)
            context = context if context.is_absolute() else ROOT / context
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            refs |= dockerfile_bases(dockerfile)
        elif service.get("image"):
            refs.add(service["image"])
    # Debian first: the stand-ins are built on it.
    return sorted((normalize(ref) for ref in refs), key=lambda ref: ("/debian:" not in ref, ref))


def dockerfile_bases(path: Path):
    args, stages, bases = {}, set(), set()
    for line in path.read_text().splitlines():
        words = line.split()
        if not words:
            continue
        keyword = words[0].upper()
        if keyword == "ARG" and len(words) > 1 and "=" in words[1] and not stages:
            key, value = words[1].split("=", 1)
            args[key] = value
        elif keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], ""), words[1])
            if image not in stages:
                bases.add(image)
            if len(words) >= 4 and words[2].upper() == "AS":
                stages.add(words[3])
    return bases


# --- stand-in base images ------------------------------------------------------------------


def provide_base_image(podman, ref, state, try_pull):
    if podman.has_image(ref):
        say(f"{ref}: present")
        return "present"
    if try_pull:
        say(f"{ref}: pulling")
        try:
            pulled = podman.run("pull", "--quiet", ref, check=False, timeout=120)
            if pulled.returncode == 0:
                return "pulled"
            say(f"{ref}: cannot be pulled ({pulled.stderr.strip().splitlines()[-1:]}), building a stand-in")
        except subprocess.TimeoutExpired:
            say(f"{ref}: pull timed out, building a stand-in")
    repository, tag = ref.rsplit(":", 1)
    name = repository.rsplit("/", 1)[-1]
    started = time.monotonic()
    if repository == "docker.io/library/debian":
        debian_from_debootstrap(podman, ref, state, suite=tag.split("-")[0])
    elif repository == "docker.io/library/rust":
        build_stand_in(podman, ref, "rust.Dockerfile", {"RUST_VERSION": tag.split("-")[0]})
    elif repository == "docker.io/library/postgres":
        build_stand_in(podman, ref, "postgres.Dockerfile", {})
    elif repository == "docker.io/motoserver/moto":
        build_stand_in(podman, ref, "moto.Dockerfile", {"MOTO_VERSION": tag})
    elif repository == "docker.io/library/node":
        node = shutil.which("node")
        npm = Path("/usr/lib/node_modules/npm")
        if not node or not npm.is_dir():
            raise SmokeError(f"{ref}: the stand-in copies the host's Node.js (node, {npm}); install nodejs and npm")
        build_stand_in(podman, ref, "node.Dockerfile", {}, extra={"node": Path(node), "npm": npm})
    elif name == "nginx-unprivileged":
        build_stand_in(podman, ref, "nginx-unprivileged.Dockerfile", {}, extra={"nginx.conf": STAND_INS / "nginx.conf"})
    else:
        raise SmokeError(f"{ref} is missing, cannot be pulled, and has no stand-in here")
    say(f"{ref}: stand-in built in {time.monotonic() - started:.0f} s")
    return "stand-in"


def debian_from_debootstrap(podman, ref, state, suite):
    if shutil.which("debootstrap") is None:
        raise SmokeError(f"{ref}: debootstrap makes its stand-in; install it with: apt-get install -y debootstrap")
    tarball = state / f"debian-{suite}.tar"
    if not tarball.exists():
        rootfs = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=state))
        try:
            say(f"debootstrap --variant=minbase {suite}")
            subprocess.run(
                ["debootstrap", "--variant=minbase", suite, str(rootfs), "http://deb.debian.org/debian"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            # What the official slim image also drops: package lists and caches.
            for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
                for path in (rootfs / junk).glob("*"):
                    if path.is_file():
                        path.unlink()
            # The host's own certificate authorities (a TLS-inspecting egress proxy's, say):
            # every image that installs ca-certificates on this base then trusts them too.
            local_cas = sorted(HOST_CA_DIR.glob("*.crt"))
            if local_cas:
                target = rootfs / HOST_CA_DIR.relative_to("/")
                target.mkdir(parents=True, exist_ok=True)
                for ca in local_cas:
                    shutil.copy(ca, target / ca.name)
                say(f"{ref} trusts the host's {', '.join(ca.name for ca in local_cas)}")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
    podman.run(
        "import",
        "--change", "CMD [\"bash\"]",
        "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        str(tarball),
        ref,
    )


def build_stand_in(podman, ref, dockerfile, build_args, extra=None):
    with tempfile.TemporaryDirectory(prefix="stand-in-") as context:
        context = Path(context)
        shutil.copy(STAND_INS / dockerfile, context / "Dockerfile")
        for script in STAND_INS.glob("*.sh"):
            shutil.copy(script, context / script.name)
        for name, source in (extra or {}).items():
            if source.is_dir():
                shutil.copytree(source, context / name, symlinks=True)
            else:
                shutil.copy(source, context / name)
        args = [arg for key, value in build_args.items() for arg in ("--build-arg", f"{key}={value}")]
        result = podman.run("build", "--pull=never", "--tag", ref, *args, str(context), capture=False, timeout=BUILD_TIMEOUT, check=False)
        if result.returncode != 0:
            raise SmokeError(f"building the stand-in {ref} failed")


# --- running the stack ---------------------------------------------------------------------


def container_of(podman, service):
    names = podman.run(
        "ps", "--all",
        "--filter", f"label=com.docker.compose.project={PROJECT}",
        "--filter", f"label=com.docker.compose.service={service}",
        "--format", "{{.Names}}",
    ).stdout.split()
    if len(names) != 1:
        raise SmokeError(f"expected one container for {service}, found {names}")
    return names[0]


def state_of(podman, container):
    out = podman.run("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container).stdout.split()
    return out[0], int(out[1])


def tail_logs(podman, container, lines=40):
    return podman.run("logs", "--tail", str(lines), container, check=False).stdout + podman.run(
        "logs", "--tail", str(lines), container, check=False
    ).stderr


def has_healthcheck(podman, container):
    out = podman.run("inspect", "--format", "{{json .Config.Healthcheck}}", container).stdout.strip()
    if out in ("", "null", "<nil>"):
        return False
    test = json.loads(out).get("Test") or []
    return bool(test) and test[0] != "NONE"


def wait_healthy(podman, service, container):
    """Runs the container's health check until it passes, as the engine's scheduler would."""
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while True:
        status, code = state_of(podman, container)
        if status in ("exited", "stopped"):
            raise SmokeError(f"{service} exited ({code}) before becoming healthy:\n{tail_logs(podman, container)}")
        if podman.run("healthcheck", "run", container, check=False).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise SmokeError(f"{service} not healthy within {HEALTH_TIMEOUT} s:\n{tail_logs(podman, container)}")
        time.sleep(2)


def wait_completed(podman, service, container):
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while True:
        status, code = state_of(podman, container)
        if status in ("exited", "stopped"):
            if code != 0:
                raise SmokeError(f"{service} exited with {code}:\n{tail_logs(podman, container)}")
            return
        if time.monotonic() > deadline:
            raise SmokeError(f"{service} did not finish within {HEALTH_TIMEOUT} s")
        time.sleep(1)


def up(podman, compose, env, services):
    """Creates every container, then starts them in dependency order, honouring each
    depends_on condition (started, healthy, completed successfully)."""
    # --no-deps: no `--requires` between the containers, which would make `podman start`
    # start (and rerun) a dependency itself, conditions unchecked.
    result = subprocess.run([*compose, "up", "--no-start", "--no-deps"], cwd=ROOT, env=env)
    if result.returncode != 0:
        raise SmokeError("creating the containers failed")
    containers = {name: container_of(podman, name) for name in services}
    done = {}
    for name in start_order(services):
        for dependency, condition in depends_on(services[name]).items():
            if done.get(dependency) == condition or condition == "service_started":
                continue
            if condition == "service_healthy":
                wait_healthy(podman, dependency, containers[dependency])
            elif condition == "service_completed_successfully":
                wait_completed(podman, dependency, containers[dependency])
            else:
                raise SmokeError(f"{name}: unknown depends_on condition {condition}")
            done[dependency] = condition
        podman.run("start", containers[name])
        say(f"started {name}")
        done.setdefault(name, "service_started")
    # Everything that stays up and has a health check must pass it.
    for name, container in containers.items():
        if services[name].get("restart") == "no":
            wait_completed(podman, name, container)
        elif has_healthcheck(podman, container):
            wait_healthy(podman, name, container)
    return containers


# --- driving the stack ---------------------------------------------------------------------


def request(method, url, auth=None, body=None, timeout=10):
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def published(services, name):
    """The host address of a service's first published port."""
    for port in services[name].get("ports") or []:
        if isinstance(port, dict):
            return f"http://{port.get('host_ip') or '127.0.0.1'}:{port['published']}"
        host, published_port, _ = str(port).rsplit(":", 2)
        return f"http://{host}:{published_port}"
    raise SmokeError(f"{name} publishes no port")


def drive(services, env):
    """Checks every service from the host and drives one echo task through the stack."""
    auth = (env.get("BASIC_AUTH_USER", "operator"), env.get("BASIC_AUTH_PASS", "autonoma-operator"))
    results = []
    for name, service in services.items():
        if not service.get("build") or not service.get("ports") or name == "dashboard":
            continue
        status, body = request("GET", published(services, name) + "/health/ready")
        results.append((name, status))
        say(f"{name} /health/ready: {status} {body[:160]}")
    for name, status in results:
        # renderctl without RENDER_API_TOKEN reports itself not ready, by design.
        if status != 200 and not (name == "renderctl" and not env.get("RENDER_API_TOKEN")):
            raise SmokeError(f"{name} is not ready ({status})")

    dashboard = published(services, "dashboard")
    for path in ("/", "/tasks"):
        status, body = request("GET", dashboard + path)
        if status != 200 or '<div id="app"' not in body:
            raise SmokeError(f"the dashboard's {path} answered {status} without the app")
    say("dashboard: / and /tasks serve the app")

    orchestrator = published(services, "orchestrator")
    deadline = time.monotonic() + TASK_TIMEOUT
    while True:
        status, body = request("GET", orchestrator + "/agents", auth=auth)
        if status == 200 and any(k.get("kind") == "echo" for a in json.loads(body) for k in a.get("kinds", [])):
            break
        if time.monotonic() > deadline:
            raise SmokeError(f"no agent registered kind echo: {status} {body[:300]}")
        time.sleep(1)

    payload = {"note": "compose smoke", "nonce": str(uuid.uuid4())}
    status, body = request("POST", orchestrator + "/task", auth=auth, body={"kind": "echo", "payload": payload})
    if status != 201:
        raise SmokeError(f"POST /task answered {status}: {body}")
    task = json.loads(body)
    say(f"task {task['id']} created ({task['status']})")
    deadline = time.monotonic() + TASK_TIMEOUT
    while task["status"] not in ("succeeded", "failed", "cancelled", "dead"):
        if time.monotonic() > deadline:
            raise SmokeError(f"task {task['id']} still {task['status']} after {TASK_TIMEOUT} s")
        time.sleep(0.5)
        status, body = request("GET", f"{orchestrator}/task/{task['id']}", auth=auth)
        if status != 200:
            raise SmokeError(f"GET /task/{task['id']} answered {status}: {body}")
        task = json.loads(body)
    if task["status"] != "succeeded":
        raise SmokeError(f"task {task['id']} ended {task['status']}: {task.get('error')}")
    echoed = json.dumps(task.get("result"), sort_keys=True)
    if payload["nonce"] not in echoed:
        raise SmokeError(f"task {task['id']} succeeded without echoing its payload: {echoed}")
    say(f"task {task['id']} succeeded through the echo agent's SQS queue: result {echoed}")
    return task


# --- main ----------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stand-ins", action="store_true", help="build stand-ins for missing base images without trying to pull them")
    parser.add_argument("--keep", action="store_true", help="leave the stack running (stop it with --down)")
    parser.add_argument("--down", action="store_true", help="stop a stack left running by --keep, then exit")
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("AUTONOMA_CACHE_DIR", Path.home() / ".cache/autonoma")) / "compose-smoke")
    args = parser.parse_args()

    if os.geteuid() != 0:
        raise SmokeError("the smoke test runs a rootful Podman: run it as root")
    for tool, package in (("podman", "podman"), ("runc", "runc"), ("tar", "tar")):
        if shutil.which(tool) is None:
            raise SmokeError(f"{tool} is missing: apt-get install -y {package} netavark aardvark-dns")
    if not Path("/usr/lib/podman/netavark").exists() and not shutil.which("netavark"):
        raise SmokeError("netavark is missing (service names must resolve): apt-get install -y netavark aardvark-dns")

    state = args.state_dir.resolve()
    podman = Podman(state / "podman")
    compose = [str(Path(sys.executable).with_name("podman-compose")), "--project-name", PROJECT, "--file", str(COMPOSE_FILE)]
    env = dict(
        podman.env,
        DOCKER_SOCKET=str(podman.socket),
        SANDBOX_HOST_DIR=str(state / "sandbox-workspaces"),
    )
    (state / "sandbox-workspaces").mkdir(parents=True, exist_ok=True)

    if args.down:
        subprocess.run([*compose, "down", "--volumes"], cwd=ROOT, env=env)
        podman.stop_api()
        return

    timings = {}
    podman.start_api()
    try:
        config = compose_config(compose, env)
        services = config["services"]

        started = time.monotonic()
        provenance = {ref: provide_base_image(podman, ref, state, try_pull=not args.stand_ins) for ref in base_images(services)}
        timings["base images"] = time.monotonic() - started

        for name, service in services.items():
            if not service.get("build"):
                continue
            say(f"building {name}")
            started = time.monotonic()
            result = subprocess.run([*compose, "build", name], cwd=ROOT, env=env, timeout=BUILD_TIMEOUT)
            if result.returncode != 0:
                raise SmokeError(f"building the image of {name} failed")
            timings[f"build {name}"] = time.monotonic() - started

        # A previous run's containers and volumes would hide a broken first start.
        subprocess.run([*compose, "down", "--volumes"], cwd=ROOT, env=env, capture_output=True)
        started = time.monotonic()
        up(podman, compose, env, services)
        timings["up until healthy"] = time.monotonic() - started

        started = time.monotonic()
        drive(services, env)
        timings["drive"] = time.monotonic() - started

        say("summary")
        for ref, how in provenance.items():
            print(f"  base image {ref}: {how}")
        for step, seconds in timings.items():
            print(f"  {step}: {seconds:.0f} s")
        images = podman.run("images", "--filter", f"reference=*{PROJECT}*", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").stdout
        print("  images:\n" + "".join(f"    {line}\n" for line in images.splitlines()), end="")
        say("compose smoke passed")
    finally:
        if not args.keep:
            subprocess.run([*compose, "down", "--volumes"], cwd=ROOT, env=env, capture_output=True)
            podman.stop_api()
        else:
            say(f"left running; stop it with: {Path(__file__).with_name('compose-smoke')} --down")


if __name__ == "__main__":
    try:
        main()
    except SmokeError as error:
        print(f"compose-smoke: {error}", file=sys.stderr)
        sys.exit(1)
