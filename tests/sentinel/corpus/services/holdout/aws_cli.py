"""A stand-in for ``aws ec2 describe-instances --output json`` against a loopback EC2 endpoint.

``python aws_cli.py ec2 describe-instances --endpoint-url URL``: a real POST of Action=DescribeInstances.
On an error answer it retries as the CLI's standard retry mode does (at most 2 retries for a throttling
code, with backoff), then prints the CLI's message to stderr and exits 254, as aws-cli v2 does.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.request

endpoint = sys.argv[sys.argv.index("--endpoint-url") + 1]
body = b"Action=DescribeInstances&Version=2016-11-15"
retries = 0
while True:
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint + "/ec2", data=body), timeout=2.0) as answer:
            ids = re.findall(r"<instanceId>([^<]+)</instanceId>", answer.read().decode())
        print(json.dumps({"Reservations": [{"Instances": [{"InstanceId": i} for i in ids]}]}, indent=4))
        sys.exit(0)
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
        code = re.search(r"<Code>([^<]+)</Code>", text)
        message = re.search(r"<Message>([^<]+)</Message>", text)
        if code and code.group(1) in {"RequestLimitExceeded", "Throttling"} and retries < 2:
            retries += 1
            time.sleep(0.05 * 2**retries)
            continue
        name = code.group(1) if code else str(exc.code)
        detail = f" (reached max retries: {retries})" if retries else ""
        print(
            f"\nAn error occurred ({name}) when calling the DescribeInstances operation{detail}: "
            f"{message.group(1) if message else exc.reason}",
            file=sys.stderr,
        )
        sys.exit(254)
