"""Benchmark: the eight example questions, our tools' answers against the AWS CLI's JSON.

    scripts/testbed setup && cargo build --release && \
        .testbed/venv/bin/python benches/tool_answers.py [--binary target/release/autoheal]

Starts a seeded test bed, then for each question:
- runs `autoheal tool NAME --args ... --output json` and counts the bytes of its answer;
- makes the same AWS calls the AWS CLI would (botocore, which the CLI is built on) and
  counts the bytes of the CLI's compact JSON for them (`--output json`, no ResponseMetadata,
  no whitespace): the baseline an agent gets from shelling out to `aws`.
Also measures our tool process: start-up time (median wall time of `autoheal tools` — no
AWS call) and peak RSS over the questions (GNU time's %M; apt-get install time).

Prints a table and the ratios the tools issue targets: questions 2-8 together at most 1/4 of
the CLI's bytes, the log question at most 0.8, start-up under 50 ms, peak RSS under 30 MB.
Exits non-zero when an answer misses its facts (the comparison is only fair when ours is
complete). `--quick` runs each timing fewer times (the test suite's smoke run).
"""

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_bed():
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests/testbed/testbed.py"), "--seed",
         "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready = json.loads(proc.stdout.readline())
    return proc, ready["endpoint"]


def compact(document) -> int:
    document = {k: v for k, v in document.items() if k != "ResponseMetadata"}
    return len(json.dumps(document, separators=(",", ":"), default=str).encode())


def run_tool(binary: str, env: dict, name: str, args: dict):
    """Our answer: (bytes, wall seconds, parsed answer)."""
    start = time.perf_counter()
    done = subprocess.run([binary, "tool", name, "--args", json.dumps(args), "--output", "json"],
                          capture_output=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{name} failed ({done.returncode}): {done.stdout.decode()} {done.stderr.decode()}")
    return len(done.stdout.rstrip(b"\n")), wall, json.loads(done.stdout)


def peak_rss_kib(binary: str, env: dict, name: str, args: dict) -> int:
    """The tool process's peak RSS, measured by GNU time: ru_maxrss of a child forked from
    this Python process would count the pages it shared with Python before exec."""
    done = subprocess.run(["/usr/bin/time", "-f", "%M", binary, "tool", name, "--args",
                           json.dumps(args), "--output", "json"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=True)
    return int(done.stderr.decode().strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/autoheal"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    binary = args.binary if os.path.exists(args.binary) else os.path.join(ROOT, "target/debug/autoheal")

    bed, endpoint = start_bed()
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testbed",
               AWS_SECRET_ACCESS_KEY="testbed", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    env.pop("AWS_SESSION_TOKEN", None)
    session = boto3.session.Session(aws_access_key_id="testbed", aws_secret_access_key="testbed",
                                    region_name="us-east-1")
    client = lambda service: session.client(service, endpoint_url=endpoint)  # noqa: E731
    now = dt.datetime.now(dt.timezone.utc)
    hour_ago = now - dt.timedelta(hours=1)

    def cli_q1():
        return [client("logs").filter_log_events(
            logGroupName="/ecs/payment-service", filterPattern="ERROR",
            startTime=int(hour_ago.timestamp() * 1000), endTime=int(now.timestamp() * 1000))]

    def cli_q4():
        ecs = client("ecs")
        arns = ecs.list_services(cluster="main")
        return [arns, ecs.describe_services(cluster="main", services=arns["serviceArns"])]

    def cli_q5():
        eks = client("eks")
        listed = eks.list_nodegroups(clusterName="prod-eks")
        return [listed] + [eks.describe_nodegroup(clusterName="prod-eks", nodegroupName=n)
                           for n in listed["nodegroups"]]

    def cli_q8():
        nodes = ["cell-a-redis-001", "cell-a-redis-002", "cell-a-redis-003"]
        cache = client("elasticache").describe_replication_groups(ReplicationGroupId="cell-a-redis")
        queries = [{"Id": f"q{i}", "MetricStat": {"Metric": {
            "Namespace": "AWS/ElastiCache", "MetricName": "CPUUtilization",
            "Dimensions": [{"Name": "CacheClusterId", "Value": n}]}, "Period": 60, "Stat": "Average"}}
            for i, n in enumerate(nodes)]
        data = client("cloudwatch").get_metric_data(MetricDataQueries=queries, StartTime=hour_ago,
                                                     EndTime=now)
        return [cache, data]

    questions = [
        ("1 error logs of payment-service, last hour", "logs_search",
         {"log_groups": ["/ecs/payment-service"], "pattern": "ERROR", "since": "1h"}, cli_q1,
         lambda a: len(a["events"]) == 3),
        ("2 alarms in ALARM", "alarms_list", {"state": "ALARM"},
         lambda: [client("cloudwatch").describe_alarms(StateValue="ALARM")],
         lambda a: a["count"] == 2 and all(x.get("reason") for x in a["alarms"])),
        ("3 instances Environment=production", "ec2_instances", {"tags": {"Environment": "production"}},
         lambda: [client("ec2").describe_instances(
             Filters=[{"Name": "tag:Environment", "Values": ["production"]}])],
         lambda a: a["count"] == 3 and all(i.get("state") for i in a["instances"])),
        ("4 ECS services of main", "ecs_services", {"cluster": "main"}, cli_q4,
         lambda a: all("rollout_state" in s and "desired" in s for s in a["services"])),
        ("5 EKS node groups and scaling", "eks_nodegroups", {}, cli_q5,
         lambda a: all({"min", "max", "desired"} <= set(n) for n in a["clusters"][0]["nodegroups"])),
        ("6 ElastiCache clusters and status", "elasticache_clusters", {},
         lambda: [client("elasticache").describe_cache_clusters(ShowCacheNodeInfo=True),
                  client("elasticache").describe_replication_groups()],
         lambda a: a["count"] == 4 and all(c.get("status") for c in a["clusters"])),
        ("7 replication group cell-a-redis", "elasticache_replication_group", {"id": "cell-a-redis"},
         lambda: [client("elasticache").describe_replication_groups(ReplicationGroupId="cell-a-redis")],
         lambda a: a["automatic_failover"] == "enabled" and a["multi_az"] == "enabled"
         and len(a["node_groups"][0]["members"]) == 3),
        ("8 ElastiCache CPU, last hour", "elasticache_metrics", {"cluster": "cell-a-redis", "since": "1h"},
         cli_q8, lambda a: len(a["series"]) == 3 and a["series"][0]["summary"]["max"] == 94.0),
    ]

    print(f"{'question':<40} {'ours':>7} {'AWS CLI':>8} {'ratio':>6}")
    totals = {"ours": 0, "cli": 0}
    rest = {"ours": 0, "cli": 0}
    log_ratio = None
    peak = 0
    failed = False
    for title, name, tool_args, cli, facts in questions:
        ours, _, answer = run_tool(binary, env, name, tool_args)
        cli_bytes = sum(compact(r) for r in cli())
        if not facts(answer):
            print(f"  {title}: the answer misses facts: {answer}", file=sys.stderr)
            failed = True
        peak = max(peak, peak_rss_kib(binary, env, name, tool_args))
        ratio = ours / cli_bytes
        print(f"{title:<40} {ours:>7} {cli_bytes:>8} {ratio:>6.2f}")
        totals["ours"] += ours
        totals["cli"] += cli_bytes
        if name == "logs_search":
            log_ratio = ratio
        else:
            rest["ours"] += ours
            rest["cli"] += cli_bytes
    print(f"{'all eight':<40} {totals['ours']:>7} {totals['cli']:>8} "
          f"{totals['ours'] / totals['cli']:>6.2f}")
    print(f"{'questions 2-8':<40} {rest['ours']:>7} {rest['cli']:>8} "
          f"{rest['ours'] / rest['cli']:>6.2f}   (target <= 0.25)")
    print(f"{'question 1 (logs)':<40} {'':>7} {'':>8} {log_ratio:>6.2f}   (target <= 0.80)")

    runs = 5 if args.quick else 30
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([binary, "tools", "--output", "json"], stdout=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - start)
    whoami = []
    for _ in range(runs):
        _, wall, _ = run_tool(binary, env, "whoami", {})
        whoami.append(wall)
    print(f"start-up: `autoheal tools` median {statistics.median(walls) * 1e3:.1f} ms "
          f"(target < 50 ms); `autoheal tool whoami` (one STS call) median "
          f"{statistics.median(whoami) * 1e3:.1f} ms")
    print(f"peak RSS over the eight questions: {peak / 1024:.1f} MiB (target < 30 MB)")
    print(f"binary: {os.path.relpath(binary, ROOT)}")
    bed.stdin.close()
    bed.wait(timeout=10)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
