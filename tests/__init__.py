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

# nova-compute runs in native threading mode (Nova's default for it since
# 2025.2); the tests run the driver the same way. This must be set before
# any Nova test package decides whether to monkey patch with eventlet.
import os

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

from nova import monkey_patch  # noqa: E402

monkey_patch.patch()

# No test may hang: oslotest turns this into a per-test timeout (seconds)
# unless the caller sets its own. Output is kept with each test's result.
os.environ.setdefault('OS_TEST_TIMEOUT', '600')
os.environ.setdefault('OS_STDOUT_CAPTURE', '1')
os.environ.setdefault('OS_STDERR_CAPTURE', '1')


# nova.test sets oslo.log up when imported, with a handler on the real
# stdout: in a stestr worker that is the subunit stream. A record logged
# outside a test's log capture (a libvirt event or thread pool of a test's
# services ending after the test, on another thread) would be written into
# the middle of a result packet and corrupt it. Such records belong to no
# test; they are dropped.
import logging  # noqa: E402
import sys  # noqa: E402

try:
    import nova.test  # noqa: E402,F401
except ImportError:
    # Without nova's test requirements (oslotest): deploy/up builds the
    # cloud's guest image with tests.functional.net_image in the cloud's
    # virtualenv, where nothing sets such a handler up.
    pass


def _drop_stdout_log_handlers():
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, 'stream', None) in (sys.stdout, sys.__stdout__):
            root.removeHandler(handler)
    root.addHandler(logging.NullHandler())


_drop_stdout_log_handlers()
