"""Deploys a CloudFormation template against the test bed (moto) and reports, through IAM,
what it created — so a test can check the role, its trust policy and its policies exist as
intended.

    deploy_stack.py --endpoint URL --template FILE --role NAME [--role NAME ...]
                    [--param KEY=VALUE ...]

Prints {"stack_status", "resources": [{"type", "status"}], "role": {"arn", "trust",
"policies": {name: document}}, "roles": {name: {...}}, "instance_profiles": [...],
"oidc_providers": [{"url", "client_ids"}]} — `role` and `instance_profiles` are the first
role's.
"""

import argparse
import ast
import json
import time
import urllib.parse

import boto3


def as_document(value):
    """A policy document as a dict: boto3 decodes JSON ones; moto 5.2.5 stores an inline
    policy created by CloudFormation as Python's repr of the dict, which is read back here."""
    if isinstance(value, dict):
        return value
    text = urllib.parse.unquote(value)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return ast.literal_eval(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--template", required=True)
    parser.add_argument("--role", required=True, action="append")
    parser.add_argument("--param", action="append", default=[])
    args = parser.parse_args()
    session = boto3.session.Session(aws_access_key_id="testbed", aws_secret_access_key="testbed",
                                    region_name="us-east-1")
    cfn = session.client("cloudformation", endpoint_url=args.endpoint)
    iam = session.client("iam", endpoint_url=args.endpoint)
    with open(args.template) as handle:
        body = handle.read()
    parameters = [{"ParameterKey": k, "ParameterValue": v}
                  for k, v in (p.split("=", 1) for p in args.param)]
    name = f"autoheal-{int(time.time() * 1000)}"
    cfn.create_stack(StackName=name, TemplateBody=body, Parameters=parameters,
                     Capabilities=["CAPABILITY_NAMED_IAM"])
    status = "CREATE_IN_PROGRESS"
    for _ in range(100):
        status = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        if not status.endswith("IN_PROGRESS"):
            break
        time.sleep(0.1)
    resources = [{"type": r.get("ResourceType"), "status": r.get("ResourceStatus")}
                 for r in cfn.describe_stack_resources(StackName=name)["StackResources"]]
    roles = {}
    for role_name in args.role:
        role = iam.get_role(RoleName=role_name)["Role"]
        policies = {}
        for policy_name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role_name,
                                           PolicyName=policy_name)["PolicyDocument"]
            policies[policy_name] = as_document(document)
        roles[role_name] = {"arn": role["Arn"],
                            "trust": as_document(role["AssumeRolePolicyDocument"]),
                            "policies": policies}
    profiles = [p["InstanceProfileName"]
                for p in iam.list_instance_profiles_for_role(RoleName=args.role[0])
                ["InstanceProfiles"]]
    providers = []
    for provider in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        detail = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider["Arn"])
        providers.append({"arn": provider["Arn"], "url": detail["Url"],
                          "client_ids": detail["ClientIDList"]})
    print(json.dumps({"stack_status": status, "resources": resources,
                      "role": roles[args.role[0]], "roles": roles,
                      "instance_profiles": profiles, "oidc_providers": providers}))


if __name__ == "__main__":
    main()
