"""Health command for the fills uploader: is the newest object under the prefix recent enough?

``python check_uploads.py ENDPOINT BUCKET PREFIX MAX_AGE``: exit 0 when it is, 1 (saying why) when not.
"""

from __future__ import annotations

import re
import sys
import time
import urllib.request
from datetime import datetime

endpoint, bucket, prefix, max_age = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
with urllib.request.urlopen(f"{endpoint}/{bucket}?list-type=2&prefix={prefix}", timeout=2) as answer:
    listing = answer.read().decode()
stamps = [
    datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() for s in re.findall(r"<LastModified>(.*?)<", listing)
]
if not stamps:
    print(f"no object under s3://{bucket}/{prefix}")
    sys.exit(1)
age = time.time() - max(stamps)
if age > max_age:
    print(f"newest object under s3://{bucket}/{prefix} is {age:.1f} s old (limit {max_age:g} s)")
    sys.exit(1)
print(f"newest object under s3://{bucket}/{prefix} is {age:.1f} s old")
