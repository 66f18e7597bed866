import asyncio, cProfile, pstats, shutil, subprocess, tempfile, time
from pathlib import Path
import uvloop
from aiohttp import web
from bench import seed
from bench.run import Bench, Clock, Plan, SECRETS_PATH, rest_line, write_lines
from bench.procs import free_port
from usersecrets.gateway.app import create_app
from usersecrets.gateway.config import GatewayConfig

workdir = Path(tempfile.mkdtemp())
bench = Bench(Plan(quick=True, seconds=5, warmup=1, scale_users=0, floor_ops=0), workdir, Clock())
try:
    bench.start()
    data = seed.small_data(bench.stack.redis_url, bench.stack.grpc_target)
    names = [seed.secret_name(i) for i in range(data.secrets_per_reader)]
    lines = [rest_line("GET", f"{SECRETS_PATH}/{n}", acc.token) for acc in data.readers for n in names]
    get = write_lines(workdir / "get.tsv", lines)
    port = free_port()
    async def main():
        app = create_app(GatewayConfig(grpc_target=bench.stack.grpc_target, http_listen=f"127.0.0.1:{port}", log_level="warning"))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        import os
        env = dict(os.environ, BENCH_LUA_DIR=str(Path("bench/lua").resolve()), BENCH_DATA=str(get), BENCH_COUNTERS="")
        proc = await asyncio.create_subprocess_exec("wrk", "-t1", "-c32", "-d4s", "-s", "bench/lua/requests.lua", f"http://127.0.0.1:{port}", stdout=subprocess.PIPE, env=env)
        await asyncio.sleep(1)
        pr = cProfile.Profile(); pr.enable()
        t0 = time.process_time()
        out, _ = await proc.communicate()
        pr.disable()
        print(out.decode()[-400:])
        pstats.Stats(pr).sort_stats("tottime").print_stats(35)
        await runner.cleanup()
    uvloop.run(main())
finally:
    bench.stop()
    shutil.rmtree(workdir, ignore_errors=True)
