"""Seeds moto with a realistic incident world, through the public AWS APIs (boto3).

The world is what an on-call engineer would find mid-incident: the payment service logs
errors in the last hour (and had some yesterday), alarms fire on 5xx and on the Redis CPU,
production EC2 instances are tagged, the `main` ECS cluster has services with a task that
stopped on an out-of-memory kill, an EKS cluster runs two node groups, and ElastiCache holds
a Redis replication group with automatic failover and replicas, plus a Memcached cluster.

    python seed.py ENDPOINT [--account ACCOUNT_ID]... [--region REGION]...

With several accounts, the others are reached the way autoheal reaches them: through
sts:AssumeRole into a role in that account (moto gives the assumed identity that account).
"""

from __future__ import annotations

import argparse
import datetime as dt

import boto3

DEFAULT_ACCOUNT = "123456789012"
CROSS_ACCOUNT_ROLE = "AutohealCrossAccountRole"
INSTANCE_ROLE = "autoheal-instance-role"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _millis(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


class World:
    def __init__(self, endpoint: str, region: str, credentials: dict):
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.region,
                            **self.credentials)

    def seed(self) -> None:
        self.iam()
        self.logs()
        network = self.ec2()
        self.ecs(network)
        self.eks(network)
        self.elasticache()
        self.metrics_and_alarms()

    def iam(self) -> None:
        iam = self.client("iam")
        trust = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
                 '"Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
        for name in (INSTANCE_ROLE, CROSS_ACCOUNT_ROLE, "eks-cluster-role", "eks-node-role"):
            try:
                iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
            except iam.exceptions.EntityAlreadyExistsException:
                pass

    def logs(self) -> None:
        logs = self.client("logs")
        now = _now()
        groups = {
            "/ecs/payment-service": [
                (now - dt.timedelta(minutes=52), "INFO payment accepted order=88121 amount=42.10"),
                (now - dt.timedelta(minutes=47), "ERROR payment declined: upstream timeout after 3000ms order=88122"),
                (now - dt.timedelta(minutes=31), "ERROR redis connection refused host=cell-a-redis.abc123.ng.0001.use1.cache.amazonaws.com:6379"),
                (now - dt.timedelta(minutes=30), "WARN retrying redis connection attempt=3"),
                (now - dt.timedelta(minutes=12), "ERROR payment failed: ReadTimeout talking to cell-a-redis order=88190"),
                (now - dt.timedelta(minutes=4), "INFO health check ok"),
                (now - dt.timedelta(hours=26), "ERROR payment failed: card processor 503 order=71002"),
            ],
            "/ecs/checkout-api": [
                (now - dt.timedelta(minutes=40), "INFO GET /checkout 200 85ms"),
                (now - dt.timedelta(minutes=33), "ERROR POST /checkout 502 payment-service unavailable"),
                (now - dt.timedelta(minutes=8), "INFO GET /checkout 200 91ms"),
            ],
            "/aws/lambda/order-processor": [
                (now - dt.timedelta(minutes=20), "START RequestId: 6f1c Version: $LATEST"),
                (now - dt.timedelta(minutes=20), "END RequestId: 6f1c"),
                # Secrets as real logs leak them: the tools must mask them (tests/tools.rs).
                (now - dt.timedelta(minutes=19), "ERROR cannot reach postgres://orders:Sup3rS3cret@orders-db.internal:5432/orders; "
                 "retrying with Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
            ],
            "/aws/eks/prod-eks/cluster": [
                (now - dt.timedelta(minutes=15), "I1126 kube-apiserver: node ip-10-0-1-23 NotReady"),
            ],
        }
        for group, events in groups.items():
            try:
                logs.create_log_group(logGroupName=group)
            except logs.exceptions.ResourceAlreadyExistsException:
                continue
            stream = "main/app/0f9e8d7c"
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
            ordered = sorted(events)
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
                {"timestamp": _millis(when), "message": message} for when, message in ordered
            ])

    def ec2(self) -> dict:
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": "prod-vpc"}])
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24",
                              AvailabilityZone=f"{self.region}{zone}")["Subnet"]["SubnetId"]
            for i, zone in ((1, "a"), (2, "b"))
        ]
        group = ec2.create_security_group(GroupName="web", Description="web tier", VpcId=vpc)["GroupId"]
        image = ec2.describe_images()["Images"][0]["ImageId"]

        def launch(name: str, environment: str, kind: str, subnet: str) -> str:
            return ec2.run_instances(
                ImageId=image, MinCount=1, MaxCount=1, InstanceType=kind, SubnetId=subnet,
                SecurityGroupIds=[group],
                TagSpecifications=[{"ResourceType": "instance", "Tags": [
                    {"Key": "Name", "Value": name}, {"Key": "Environment", "Value": environment},
                    {"Key": "Team", "Value": "payments"}]}],
            )["Instances"][0]["InstanceId"]

        launch("web-1", "production", "m5.large", subnets[0])
        launch("web-2", "production", "m5.large", subnets[1])
        stopped = launch("batch-1", "production", "c5.xlarge", subnets[0])
        launch("web-staging-1", "staging", "t3.medium", subnets[0])
        ec2.stop_instances(InstanceIds=[stopped])
        return {"vpc": vpc, "subnets": subnets, "security_group": group}

    def ecs(self, network: dict) -> None:
        ecs = self.client("ecs")
        ecs.create_cluster(clusterName="main")
        ecs.create_cluster(clusterName="batch")
        for family, memory in (("payment-service", "512"), ("checkout-api", "256")):
            ecs.register_task_definition(
                family=family, networkMode="bridge", cpu="256", memory=memory,
                containerDefinitions=[{"name": family, "image": f"example/{family}:1.4.2",
                                       "essential": True, "memory": int(memory)}],
            )
        vpc_config = {"awsvpcConfiguration": {"subnets": network["subnets"],
                                              "securityGroups": [network["security_group"]]}}
        ecs.create_service(cluster="main", serviceName="payment-service",
                           taskDefinition="payment-service", desiredCount=4, launchType="FARGATE",
                           networkConfiguration=vpc_config)
        ecs.create_service(cluster="main", serviceName="checkout-api",
                           taskDefinition="checkout-api", desiredCount=2, launchType="FARGATE",
                           networkConfiguration=vpc_config)
        # moto 5.2.5 crashes on RunTask with an awsvpc networkConfiguration (its
        # NetworkInterface has no private_dns_name), so the task definitions use bridge mode.
        task = ecs.run_task(cluster="main", taskDefinition="payment-service", launchType="FARGATE",
                            startedBy="ecs-svc/payment-service")
        arn = task["tasks"][0]["taskArn"]
        ecs.stop_task(cluster="main", task=arn,
                      reason="Essential container in task exited: OutOfMemoryError: Container killed due to memory usage")
        ecs.run_task(cluster="main", taskDefinition="payment-service", launchType="FARGATE",
                     startedBy="ecs-svc/payment-service")

    def eks(self, network: dict) -> None:
        eks = self.client("eks")
        account = self.client("sts").get_caller_identity()["Account"]
        cluster_role = f"arn:aws:iam::{account}:role/eks-cluster-role"
        node_role = f"arn:aws:iam::{account}:role/eks-node-role"
        eks.create_cluster(name="prod-eks", version="1.31", roleArn=cluster_role,
                           resourcesVpcConfig={"subnetIds": network["subnets"]})
        eks.create_nodegroup(clusterName="prod-eks", nodegroupName="general",
                             scalingConfig={"minSize": 2, "maxSize": 6, "desiredSize": 3},
                             subnets=network["subnets"], nodeRole=node_role,
                             instanceTypes=["m5.large"], capacityType="ON_DEMAND")
        eks.create_nodegroup(clusterName="prod-eks", nodegroupName="spot-batch",
                             scalingConfig={"minSize": 0, "maxSize": 10, "desiredSize": 1},
                             subnets=network["subnets"], nodeRole=node_role,
                             instanceTypes=["c5.xlarge", "c5a.xlarge"], capacityType="SPOT")

    def elasticache(self) -> None:
        cache = self.client("elasticache")
        cache.create_replication_group(
            ReplicationGroupId="cell-a-redis",
            ReplicationGroupDescription="payments session and idempotency cache, cell A",
            Engine="redis", EngineVersion="7.1", CacheNodeType="cache.r6g.large",
            NumNodeGroups=1, ReplicasPerNodeGroup=2,
            AutomaticFailoverEnabled=True, MultiAZEnabled=True,
        )
        cache.create_cache_cluster(CacheClusterId="sessions-memcached", Engine="memcached",
                                   CacheNodeType="cache.t3.medium", NumCacheNodes=2)

    def metrics_and_alarms(self) -> None:
        cloudwatch = self.client("cloudwatch")
        now = _now()
        cpu = [22, 24, 23, 31, 48, 67, 82, 91, 94, 93, 88, 90]
        for node, scale in (("cell-a-redis-001", 1.0), ("cell-a-redis-002", 0.4), ("cell-a-redis-003", 0.35)):
            dims = [{"Name": "CacheClusterId", "Value": node}]
            data = []
            for i, value in enumerate(cpu):
                when = now - dt.timedelta(minutes=5 * (len(cpu) - i))
                data.append({"MetricName": "CPUUtilization", "Dimensions": dims,
                             "Timestamp": when, "Value": value * scale, "Unit": "Percent"})
                data.append({"MetricName": "EngineCPUUtilization", "Dimensions": dims,
                             "Timestamp": when, "Value": min(99.0, value * scale * 1.05), "Unit": "Percent"})
                data.append({"MetricName": "CurrConnections", "Dimensions": dims,
                             "Timestamp": when, "Value": 400 + 30 * i, "Unit": "Count"})
                data.append({"MetricName": "Evictions", "Dimensions": dims,
                             "Timestamp": when, "Value": max(0, (i - 6) * 120), "Unit": "Count"})
            cloudwatch.put_metric_data(Namespace="AWS/ElastiCache", MetricData=data)
        cloudwatch.put_metric_data(Namespace="Payments", MetricData=[
            {"MetricName": "5xxCount", "Dimensions": [{"Name": "Service", "Value": "payment-service"}],
             "Timestamp": now - dt.timedelta(minutes=m), "Value": v, "Unit": "Count"}
            for m, v in ((40, 2), (30, 45), (20, 130), (10, 210))
        ])
        alarms = [
            ("payment-service-5xx-high", "Payments", "5xxCount", [{"Name": "Service", "Value": "payment-service"}], 50, "ALARM",
             "Threshold Crossed: 1 datapoint [210.0] was greater than the threshold (50.0)."),
            ("cell-a-redis-cpu-high", "AWS/ElastiCache", "CPUUtilization", [{"Name": "CacheClusterId", "Value": "cell-a-redis-001"}], 80, "ALARM",
             "Threshold Crossed: 3 datapoints [94.0, 93.0, 90.0] were greater than the threshold (80.0)."),
            ("checkout-api-latency", "Payments", "Latency", [{"Name": "Service", "Value": "checkout-api"}], 800, "OK",
             "Threshold Crossed: no datapoints were greater than the threshold (800.0)."),
            ("orders-queue-depth", "Payments", "QueueDepth", [], 1000, "INSUFFICIENT_DATA",
             "Insufficient Data: 1 datapoint was unknown."),
        ]
        for name, namespace, metric, dims, threshold, state, reason in alarms:
            cloudwatch.put_metric_alarm(
                AlarmName=name, Namespace=namespace, MetricName=metric, Dimensions=dims,
                Statistic="Average", Period=300, EvaluationPeriods=1, Threshold=threshold,
                ComparisonOperator="GreaterThanThreshold", AlarmDescription=f"{metric} above {threshold}",
            )
            cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)


def credentials_for(endpoint: str, account: str) -> dict:
    """The default account's test keys, or assumed-role credentials in another account."""
    base = {"aws_access_key_id": "testbed", "aws_secret_access_key": "testbed"}
    if account == DEFAULT_ACCOUNT:
        return base
    sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1", **base)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{CROSS_ACCOUNT_ROLE}",
                            RoleSessionName="testbed-seed")["Credentials"]
    return {"aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"]}


def seed_world(endpoint: str, accounts=(DEFAULT_ACCOUNT,), regions=("us-east-1",)) -> None:
    for account in accounts:
        credentials = credentials_for(endpoint, account)
        for region in regions:
            World(endpoint, region, credentials).seed()


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed the test bed with an incident world.")
    parser.add_argument("endpoint")
    parser.add_argument("--account", action="append", dest="accounts")
    parser.add_argument("--region", action="append", dest="regions")
    args = parser.parse_args()
    seed_world(args.endpoint, args.accounts or [DEFAULT_ACCOUNT], args.regions or ["us-east-1"])


if __name__ == "__main__":
    main()
