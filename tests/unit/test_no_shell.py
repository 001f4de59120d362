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

"""No shell anywhere in the package: every process is started from an
argument list (oslo.concurrency's processutils.execute), so no string of a
user's can become a command.

The package's source is parsed and searched for what could run a shell:
``shell=`` set to anything but False, os.system/os.popen and the os.exec*
and os.spawn* families, the subprocess module itself, and a command given
to processutils.execute as one string (a constant with a space, or a
string built by formatting).
"""

import ast
import os

import testtools

import nova_kvmx

PACKAGE = os.path.dirname(nova_kvmx.__file__)
SHIM = os.path.join(os.path.dirname(PACKAGE), 'nova', 'virt', 'kvmx.py')

_OS_SHELLS = ('system', 'popen', 'execl', 'execle', 'execlp', 'execlpe',
              'execv', 'execve', 'execvp', 'execvpe', 'spawnl', 'spawnle',
              'spawnlp', 'spawnlpe', 'spawnv', 'spawnve', 'spawnvp',
              'spawnvpe', 'posix_spawn', 'posix_spawnp')
_EXECUTE = ('execute', 'trycmd', 'ssh_execute')


def _name(node):
    """'a.b.c' for an attribute chain or name, else ''."""
    if isinstance(node, ast.Attribute):
        return '%s.%s' % (_name(node.value), node.attr)
    return node.id if isinstance(node, ast.Name) else ''


def _is_command_string(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return ' ' in node.value.strip()
    if isinstance(node, ast.BinOp) and isinstance(node.op,
                                                  (ast.Add, ast.Mod)):
        return not isinstance(node.left, ast.List)
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Call) and _name(node.func).endswith('.format'))


def problems(source, filename='<source>'):
    """['file:line: what'] for every way ``source`` could run a shell."""
    found = []

    def report(node, what):
        found.append('%s:%d: %s' % (filename, node.lineno, what))

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(
                node, ast.Import) else [node.module or '']
            if any(m.split('.')[0] in ('subprocess', 'commands', 'pty')
                   for m in modules):
                report(node, 'imports %s' % ', '.join(modules))
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        for kw in node.keywords:
            if kw.arg == 'shell' and not (
                    isinstance(kw.value, ast.Constant) and
                    kw.value.value is False):
                report(node, '%s(shell=...)' % name)
        if name.startswith('os.') and name[3:] in _OS_SHELLS:
            report(node, name)
        if name.split('.')[-1] in _EXECUTE and node.args and \
                _is_command_string(node.args[0]):
            report(node, '%s() given a command line, not arguments' % name)
    return found


def package_sources():
    for root, _dirs, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith('.py'):
                yield os.path.join(root, name)
    yield SHIM


class NoShellTest(testtools.TestCase):

    def test_package_runs_no_shell(self):
        found = []
        sources = list(package_sources())
        self.assertGreater(len(sources), 20)
        for path in sources:
            with open(path) as f:
                found += problems(f.read(), os.path.relpath(path, PACKAGE))
        self.assertEqual([], found)

    def test_what_the_scan_catches(self):
        for bad in ('import subprocess',
                    'from subprocess import run',
                    'x.run(cmd, shell=True)',
                    'x.run(cmd, shell=flag)',
                    'os.system("ls")',
                    'os.popen(cmd)',
                    'os.execvp("sh", args)',
                    'processutils.execute("qemu-img info " + path)',
                    'processutils.execute("qemu-img info %s" % path)',
                    'processutils.execute(f"qemu-img info {path}")',
                    'processutils.execute("qemu-img {}".format(p))',
                    'utils.execute("rm -rf /x")'):
            self.assertEqual(1, len(problems(bad)), bad)

    def test_what_the_scan_allows(self):
        for good in ('processutils.execute("qemu-img", "info", path)',
                     'processutils.execute(*args)',
                     'x.run(cmd, shell=False)',
                     'LOG.info("a b %s" % c)'):
            self.assertEqual([], problems(good), good)
