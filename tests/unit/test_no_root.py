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

"""nova-compute runs as an unprivileged user: the driver needs root only
through the privsep entrypoints it names, one line each in the README's
"Security" section.

The package's source (not ``cmd/``: operator tools an operator runs as
root) is parsed and searched for what would need root outside privsep:
changing a file's owner (but a group change of one's own file, ``uid``
-1), changing the process's identity, mounting, making device nodes,
commands that need root or run others as root (``run_as_root=True``,
sudo, rootwrap, mount, ip, ovs-vsctl...), writing under /sys or /proc,
and privsep contexts or entrypoints of its own. Every call to a function
of ``nova.privsep`` is then looked up: those that are privsep entrypoints
must be exactly the documented ones.
"""

import ast
import importlib
import os

from oslo_privsep import priv_context
import testtools

from tests.unit import test_no_shell

PACKAGE = test_no_shell.PACKAGE
README = os.path.join(os.path.dirname(PACKAGE), 'README.md')

# The privsep entrypoints the driver calls itself, and why.
PRIVILEGED = {
    'nova.privsep.path.last_bytes':
        'the console log, which virtlogd writes as root (0600)',
    'nova.privsep.path.chown':
        'a live snapshot\'s copy and a stopped guest\'s config drive, '
        'which libvirt leaves to QEMU\'s user',
}

_OS_ROOT = ('chown', 'lchown', 'fchown', 'setuid', 'seteuid', 'setreuid',
            'setresuid', 'setgid', 'setegid', 'setregid', 'setresgid',
            'setgroups', 'initgroups', 'chroot', 'mknod', 'mount', 'umount')
_ROOT_COMMANDS = ('sudo', 'nova-rootwrap', 'privsep-helper', 'mount',
                  'umount', 'losetup', 'kpartx', 'qemu-nbd', 'ip', 'tc',
                  'iptables', 'ip6tables', 'ebtables', 'ovs-vsctl',
                  'ovs-ofctl', 'brctl', 'modprobe', 'sysctl', 'chown',
                  'chgrp', 'setfacl', 'nsenter', 'unshare', 'tee', 'dd',
                  'blockdev', 'multipath', 'iscsiadm')
_EXECUTE = test_no_shell._EXECUTE
_name = test_no_shell._name


def _constant(node):
    return node.value if isinstance(node, ast.Constant) else None


def _keyword(node, name):
    return next((kw.value for kw in node.keywords if kw.arg == name), None)


def _own_privsep(node):
    """What of ``node`` would be a privsep context or entrypoint of the
    driver's own, else None."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = [a.name for a in node.names] if isinstance(
            node, ast.Import) else [node.module or '']
        if any(m.startswith('oslo_privsep') for m in modules):
            return 'a privsep context of its own'
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call):
                decorator = decorator.func
            if _name(decorator).split('.')[-1].startswith('entrypoint'):
                return 'a privsep entrypoint of its own'
    if isinstance(node, ast.Call) and _name(node.func).endswith(
            'PrivContext'):
        return _name(node.func)
    return None


def _os_call(node, name):
    """An os/shutil call that needs root (a group change of one's own
    file, uid -1, does not)."""
    if name not in ['os.' + f for f in _OS_ROOT] + ['shutil.chown']:
        return None
    uid = node.args[1] if len(node.args) > 1 else _keyword(node, 'uid')
    if name == 'os.chown' and isinstance(uid, ast.UnaryOp) and \
            _constant(uid.operand) == 1:
        return None
    return name


def _command(node, name):
    """A command run as root, or one that needs root."""
    if name.split('.')[-1] not in _EXECUTE:
        return None
    run_as_root = _keyword(node, 'run_as_root')
    if run_as_root is not None and _constant(run_as_root) is not False:
        return '%s(run_as_root=...)' % name
    if node.args and _constant(node.args[0]) in _ROOT_COMMANDS:
        return '%s(%r)' % (name, _constant(node.args[0]))
    return None


def _kernel_write(node, name):
    """A file under /sys, /proc or /dev opened to write."""
    if name != 'open' or not node.args:
        return None
    path = _constant(node.args[0])
    mode = _constant(node.args[1]) if len(node.args) > 1 else \
        _constant(_keyword(node, 'mode'))
    if isinstance(path, str) and path.startswith(
            ('/sys/', '/proc/', '/dev/')) and mode and set(mode) & set('wa+'):
        return 'open(%r, %r)' % (path, mode)
    return None


def problems(source, filename='<source>'):
    """['file:line: what'] for everything that would need root."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        whats = [_own_privsep(node)]
        if isinstance(node, ast.Call):
            name = _name(node.func)
            whats += [check(node, name)
                      for check in (_os_call, _command, _kernel_write)]
        found += ['%s:%d: %s' % (filename, node.lineno, what)
                  for what in whats if what]
    return found


def privsep_calls(source):
    """The dotted names of the ``nova.privsep`` functions called."""
    return {_name(node.func) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and
            _name(node.func).startswith('nova.privsep.')}


def is_entrypoint(dotted):
    module, _, func = dotted.rpartition('.')
    return getattr(getattr(importlib.import_module(module), func),
                   priv_context._ENTRYPOINT_ATTR, None) is not None


def driver_sources():
    """The package's modules, but the operator commands (cmd/)."""
    cmd = os.path.join(PACKAGE, 'cmd') + os.sep
    return [path for path in test_no_shell.package_sources()
            if not path.startswith(cmd)]


class NoRootTest(testtools.TestCase):

    def sources(self):
        sources = driver_sources()
        self.assertGreater(len(sources), 20)
        for path in sources:
            with open(path) as f:
                yield os.path.relpath(path, PACKAGE), f.read()

    def test_driver_needs_no_root_outside_privsep(self):
        found = []
        for name, source in self.sources():
            found += problems(source, name)
        self.assertEqual([], found)

    def test_privileged_entrypoints_are_the_documented_ones(self):
        called = set()
        for _name_, source in self.sources():
            called |= privsep_calls(source)
        self.assertEqual(set(PRIVILEGED),
                         {c for c in called if is_entrypoint(c)})
        with open(README) as f:
            readme = f.read()
        missing = [e for e in PRIVILEGED if '`%s`' % e not in readme]
        self.assertEqual([], missing, 'not in the README')

    def test_what_the_scan_catches(self):
        for bad in ('os.chown(path, 0, 0)',
                    'os.chown(path, uid, -1)',
                    'os.lchown(path, 0, 0)',
                    'shutil.chown(path, "nova")',
                    'os.seteuid(0)',
                    'os.setgroups([])',
                    'os.mknod(path)',
                    'processutils.execute("mount", dev, path)',
                    'processutils.execute("ip", "link", "set", dev, "up")',
                    'processutils.execute("sudo", "true")',
                    'processutils.execute("qemu-img", "info", p, '
                    'run_as_root=True)',
                    'utils.execute("ls", run_as_root=x)',
                    'ctx = priv_context.PrivContext("kvmx")',
                    '@ctx.entrypoint\ndef f(): pass',
                    '@ctx.entrypoint_with_timeout(5)\ndef f(): pass',
                    'import oslo_privsep.priv_context',
                    'open("/sys/kernel/mm/x", "w")',
                    'open("/proc/sys/vm/x", mode="a")'):
            self.assertEqual(1, len(problems(bad)), bad)

    def test_what_the_scan_allows(self):
        for good in ('os.chown(path, -1, gid)',
                     'os.chmod(path, 0o600)',
                     'processutils.execute("qemu-img", "info", path)',
                     'processutils.execute("fallocate", "-l", "1", p, '
                     'run_as_root=False)',
                     'nova.privsep.path.chown(path, uid=os.geteuid())',
                     'open("/sys/devices/system/cpu/online")',
                     'open(path, "w")'):
            self.assertEqual([], problems(good), good)

    def test_entrypoints_are_told_apart(self):
        self.assertTrue(is_entrypoint('nova.privsep.path.chown'))
        self.assertFalse(is_entrypoint('nova.privsep.fs.unprivileged_mkfs'))
