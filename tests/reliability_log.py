# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""What the reliability tests did, for benchmarks/reliability_report.py.

Fault scenarios record whether they survived and what they found left on
the host; fuzz tests record how many examples ran and how they ended. The
records are JSON lines appended to ``$KVMX_RELIABILITY_LOG``; without that
variable (a normal test run) nothing is written.
"""

import json
import os

ENV = 'KVMX_RELIABILITY_LOG'


def record(kind, name, **fields):
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps(dict(fields, kind=kind, name=name), sort_keys=True)
    # One short write per line in append mode: parallel test workers
    # appending to one file do not interleave lines.
    with open(path, 'a') as f:
        f.write(line + '\n')
