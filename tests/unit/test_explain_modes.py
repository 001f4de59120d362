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

"""``nova-kvmx explain`` with usage, as an operator runs it: where the
usage comes from (Nova's database, a usage file), many flavors in one
run (``--flavors``), every host of a cell (``--all-hosts``), and the
long-lived server (``--serve``/``--server``) whose answers are the
one-shot answers."""

import json
import os
import signal
import subprocess
import sys
import time

import nova.conf
from oslo_config import fixture as config_fixture
import yaml

from nova_kvmx.cmd import main
from tests.unit import nova_host
from tests.unit import test_explain
from tests.unit import test_explain_cli

SNC = test_explain.SNC_OPTIONS
DED = ['--extra-spec', 'hw:cpu_policy=dedicated']
PAGES_1G = {'hw:cpu_policy': 'dedicated', 'hw:mem_page_size': '1GB'}
USAGE_YAML = '''
instances:
- name: db0
  resources: {PCPU: 2, MEMORY_MB: 12288}
  cells:
  - host_cell: 2
    memory_mb: 12288
    page_size: 1G
    pinned: {0: 8, 1: 24}
- name: vf0
  pci_devices: ["0000:81:02.0"]
  cells:
  - host_cell: 1
    memory_mb: 1024
    pinned: {0: 4, 1: 20}
'''


class HostInUseCommandTest(test_explain_cli.CommandTestCase):
    """A saved host with usage from Nova's database or a usage file."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(nova.conf.CONF))
        test_explain.ExplainTestCase.configure(self, SNC)
        self.node = self.useFixture(nova_host.NovaHost(
            test_explain.snc_host()))

    configure = test_explain.ExplainTestCase.configure

    def explain(self, *args, options=None):
        options = dict(SNC, database={'connection': self.node.url},
                       DEFAULT=dict(SNC['DEFAULT'], host=nova_host.HOST),
                       **(options or {}))
        return self.run_main(
            'explain', '--config-file', self.nova_conf(options),
            '--capabilities', test_explain.SNC_CAPS,
            '--node-devices', test_explain.SNC_DEVICES, *args)

    def test_usage_from_the_database(self):
        for i in range(3):
            self.node.boot('db%d' % i, 2, 12288, extra_specs=PAGES_1G)
        status, out, err = self.explain(
            '--usage', 'database', '--vcpus', '2', '--ram', '16384',
            '--extra-spec', 'hw:cpu_policy=dedicated',
            '--extra-spec', 'hw:mem_page_size=1GB')

        self.assertEqual((1, ''), (status, err))
        self.assertIn('Verdict: DOES NOT FIT', out)
        self.assertIn('needs 16 free 1G pages, has 4 (12 used by 1 '
                      'instance: db', out)
        self.assertIn('in use (from Nova\'s database at sqlite:///', out)
        self.assertIn('db0 ', out)

    def test_usage_saved_and_read_back(self):
        self.node.boot('vnf', 4, 4096, extra_specs={
            **PAGES_1G, 'pci_passthrough:alias': 'vf:1'})
        path = os.path.join(self.tmp, 'usage.yaml')
        status, from_db, _err = self.explain(
            '--usage', 'database', '--save-usage', path, '--format', 'json',
            '--vcpus', '8', '--ram', '16384', *DED,
            '--extra-spec', 'hw:mem_page_size=1GB')
        with open(path) as f:
            saved = yaml.safe_load(f)
        status2, from_file, err = self.explain(
            '--usage-file', path, '--format', 'json',
            '--vcpus', '8', '--ram', '16384', *DED,
            '--extra-spec', 'hw:mem_page_size=1GB')

        self.assertEqual((status, ''), (status2, err))
        [inst] = saved['instances']
        self.assertEqual('vnf', inst['name'])
        self.assertEqual({'MEMORY_MB': 4096, 'PCPU': 4}, inst['resources'])
        self.assertEqual('1G', inst['cells'][0]['page_size'])
        self.assertEqual(1, len(inst['pci_devices']))
        from_db, from_file = json.loads(from_db), json.loads(from_file)
        self.assertEqual(from_db['claim'], from_file['claim'])
        self.assertEqual(from_db['reasons'], from_file['reasons'])
        self.assertEqual('usage file %s' % path,
                         from_file['usage']['source'])

    def test_usage_file_as_documented(self):
        path = self.write_file('usage.yaml', USAGE_YAML)
        status, out, err = self.explain(
            '--usage-file', path, '--format', 'json', '--vcpus', '2',
            '--ram', '1024', '--extra-spec', 'hw:cpu_policy=dedicated',
            '--extra-spec', 'pci_passthrough:alias=vf:4')

        self.assertEqual((1, ''), (status, err))
        result = json.loads(out)
        self.assertEqual({'MEMORY_MB': 13312, 'PCPU': 4},
                         result['host']['used'])
        cells = {c['cell']: c for c in result['host']['cells']}
        self.assertEqual(('8,24', 4), (cells[2]['pinned_cpus'],
                                       cells[2]['free_pages']['1G']))
        self.assertIn('free under [pci] device_spec: 3 on NUMA node 1 (PCI '
                      'devices in use by 1 instance: vf0 (1))',
                      ' '.join(result['reasons']))

    def write_file(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def test_bad_usage_file(self):
        path = self.write_file('usage.yaml',
                               'instances:\n- name: x\n  cells:\n'
                               '  - memory_mb: 512\n')
        test_explain_cli.ExplainCommandTest.assertBadInput(
            self, *self.explain('--usage-file', path, '--vcpus', '1',
                                '--ram', '512'),
            'Usage file %s: instances[0] (x): \'host_cell\' is missing'
            % path)

    def test_saved_host_without_usage_is_empty(self):
        status, out, _err = self.explain('--vcpus', '1', '--ram', '512')
        self.assertEqual(0, status)
        self.assertIn('Note: The host is taken as empty: instances already '
                      'on it are not counted (usage: none: a saved host is '
                      'taken as empty unless --usage-file gives its usage)',
                      out)

    def test_libvirt_usage_needs_libvirt(self):
        test_explain_cli.ExplainCommandTest.assertBadInput(
            self, *self.explain('--usage', 'libvirt', '--vcpus', '1',
                                '--ram', '512'),
            '--usage libvirt reads a live libvirt, not --capabilities')

    def test_database_usage_needs_a_connection(self):
        test_explain_cli.ExplainCommandTest.assertBadInput(
            self, *self.run_main(
                'explain', '--config-file', self.nova_conf(SNC),
                '--capabilities', test_explain.SNC_CAPS, '--usage',
                'database', '--vcpus', '1', '--ram', '512'),
            '--usage database needs [database] connection')

    def test_many_flavors_in_one_run(self):
        self.node.boot('vnf', 8, 1024, extra_specs={
            'hw:cpu_policy': 'dedicated'})
        path = self.write_file('flavors.yaml', yaml.safe_dump([
            {'name': 'small', 'vcpus': 2, 'ram': 1024,
             'extra_specs': {'hw:cpu_policy': 'dedicated'}},
            {'name': 'huge', 'vcpus': 9, 'ram': 1024,
             'extra_specs': {'hw:cpu_policy': 'dedicated'}},
            {'name': 'typo', 'vcpus': 1, 'ram': 512,
             'extra_specs': {'hw:cpu_polcy': 'dedicated'}},
        ]))
        status, out, err = self.explain('--usage', 'database', '--flavors',
                                        path, '--format', 'json')

        self.assertEqual((2, ''), (status, err))
        small, huge, typo = json.loads(out)
        self.assertEqual(('small', 0, True),
                         (small['name'], small['status'], small['fits']))
        self.assertEqual(('huge', 1, False),
                         (huge['name'], huge['status'], huge['fits']))
        self.assertEqual(('typo', 2), (typo['name'], typo['status']))
        self.assertIn("'hw:cpu_polcy' does not appear to be a valid",
                      typo['error'])

        status, out, _err = self.explain('--usage', 'database',
                                         '--flavors', path)
        self.assertIn('in use (from Nova\'s database', out)
        lines = out.splitlines()
        self.assertTrue(any(line.startswith('small ') and 'FITS' in line
                            for line in lines), out)
        self.assertTrue(any(line.startswith('huge ') and 'DOES NOT FIT' in
                            line and 'needs 9 dedicated CPUs' in line
                            for line in lines), out)

    def test_flavors_replace_vcpus(self):
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_kvmx.cmd', 'explain', '--flavors',
             'f.yaml', '--vcpus', '1'], cwd=test_explain_cli.REPO_ROOT,
            capture_output=True, text=True, timeout=60)
        self.assertEqual(2, proc.returncode)
        self.assertIn('--flavors replaces --vcpus and --ram', proc.stderr)


class AllHostsCommandTest(test_explain_cli.CommandTestCase):
    """Every compute node of a cell, judged from Nova's database."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(nova.conf.CONF))
        test_explain.ExplainTestCase.configure(self, SNC)
        facts = test_explain.snc_host()
        self.full = self.useFixture(nova_host.NovaHost(
            facts, host='compute1', node='compute1'))
        url = self.full.url
        self.free = self.useFixture(nova_host.NovaHost(
            facts, host='compute2', node='compute2', url=url,
            node_uuid='5a9c1d1e-4f6a-4c55-9b39-2b8e7d0f4a12'))
        self.pages = self.useFixture(nova_host.NovaHost(
            facts, host='compute3', node='compute3', url=url,
            node_uuid='5a9c1d1e-4f6a-4c55-9b39-2b8e7d0f4a13'))
        self.off = self.useFixture(nova_host.NovaHost(
            facts, host='compute4', node='compute4', url=url,
            node_uuid='5a9c1d1e-4f6a-4c55-9b39-2b8e7d0f4a14'))
        for i in range(3):
            self.full.boot('vnf%d' % i, 8, 1024,
                           extra_specs={'hw:cpu_policy': 'dedicated'})
            self.pages.boot('db%d' % i, 1, 15360, extra_specs=PAGES_1G)
        self.free.boot('vf', 2, 1024, extra_specs={
            'hw:cpu_policy': 'dedicated', 'pci_passthrough:alias': 'vf:1'})
        self.off.service.disabled = True
        self.off.service.disabled_reason = 'maintenance'
        self.off.service.save()

    def all_hosts(self, *args):
        conf = self.nova_conf(dict(SNC, database={
            'connection': self.full.url}))
        return self.run_main('explain', '--config-file', conf,
                             '--all-hosts', *args)

    def test_which_hosts_fit_and_what_limits_the_others(self):
        status, out, err = self.all_hosts(
            '--vcpus', '8', '--ram', '4096', '--format', 'json',
            '--extra-spec', 'hw:cpu_policy=dedicated',
            '--extra-spec', 'hw:mem_page_size=1GB')

        self.assertEqual((0, ''), (status, err))
        result = json.loads(out)
        self.assertEqual(['compute2'], result['fits'])
        # Fitting hosts first, then by what limits them.
        self.assertEqual(
            [('compute2', True, None), ('compute3', False, '1G pages'),
             ('compute1', False, 'PCPU'),
             ('compute4', False, 'service disabled')],
            [(r['host'], r['fits'], r['limited_by'])
             for r in result['hosts']])
        by_host = {r['host']: r for r in result['hosts']}
        self.assertEqual([], by_host['compute2']['notes'])
        self.assertIn('needs 4 free 1G pages, has 1 (15 used by 1 '
                      'instance: db', ' '.join(by_host['compute3']['reasons']))
        self.assertIn('Placement: PCPU: needs 8, 4 free of 28 (24 used by '
                      '3 instances', by_host['compute1']['reason'])
        self.assertEqual('nova-compute is disabled (maintenance)',
                         by_host['compute4']['reason'])
        self.assertEqual({'1G pages': 1, 'PCPU': 1, 'service disabled': 1},
                         result['limited_by'])

    def test_as_a_table(self):
        status, out, _err = self.all_hosts(
            '--vcpus', '30', '--ram', '4096',
            '--extra-spec', 'hw:cpu_policy=dedicated')
        self.assertEqual(1, status)
        self.assertIn('Fits on 0: none', out)
        self.assertIn('Limited by: PCPU (3), service disabled (1)', out)
        self.assertIn('Placement: PCPU: needs 30, the host offers 28', out)

    def test_needs_the_database(self):
        test_explain_cli.ExplainCommandTest.assertBadInput(
            self, *self.run_main(
                'explain', '--config-file', self.nova_conf(SNC),
                '--all-hosts', '--vcpus', '1', '--ram', '512'),
            '--all-hosts reads Nova\'s database')


class ServerTest(test_explain_cli.CommandTestCase):
    """``explain --serve`` in a process of its own, asked by clients."""

    def start_server(self):
        sock = os.path.join(self.tmp, 'explain.sock')
        proc = subprocess.Popen(
            [sys.executable, '-m', 'nova_kvmx.cmd', 'explain', '--serve',
             sock], cwd=test_explain_cli.REPO_ROOT,
            stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.stop, proc)
        deadline = time.monotonic() + 120
        while not os.path.exists(sock):
            self.assertIsNone(proc.poll(), proc.stderr.read()
                              if proc.poll() is not None else '')
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.1)
        return sock, proc

    def stop(self, proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        proc.stderr.close()

    def command(self, *args):
        """The command run from the test's directory (this tree's
        nova_kvmx all the same)."""
        env = dict(os.environ, PYTHONPATH=test_explain_cli.REPO_ROOT)
        return subprocess.run(
            [sys.executable, '-m', 'nova_kvmx.cmd'] + list(args),
            cwd=self.tmp, env=env, capture_output=True, text=True,
            timeout=120)

    def test_served_answers_are_the_one_shot_answers(self):
        sock, proc = self.start_server()
        conf = self.nova_conf(SNC)
        question = ['explain', '--config-file', conf, '--capabilities',
                    test_explain.SNC_CAPS, '--node-devices',
                    test_explain.SNC_DEVICES, '--vcpus', '8', '--ram',
                    '8192'] + [a for s in test_explain_cli.NFV_SPECS
                               for a in ('--extra-spec', s)]
        for fmt in ('json', 'table'):
            served = self.command(*question, '--format', fmt,
                                  '--server', sock)
            one_shot = self.command(*question, '--format', fmt)
            self.assertEqual((0, ''), (served.returncode, served.stderr))
            self.assertEqual(one_shot.stdout, served.stdout)

        # Bad input: the one-line error, the exit status.
        bad = self.command('explain', '--server', sock, '--config-file',
                           conf, '--capabilities', test_explain.SNC_CAPS,
                           '--vcpus', '1', '--ram', '512',
                           '--extra-spec', 'hw:cpu_polcy=dedicated')
        self.assertEqual((2, ''), (bad.returncode, bad.stdout))
        self.assertIn("'hw:cpu_polcy' does not appear to be a valid",
                      bad.stderr)
        self.assertEqual(1, len(bad.stderr.splitlines()))
        # Relative paths are the client's.
        rel = self.command('explain', '--server', sock, '--config-file',
                           os.path.basename(conf), '--capabilities',
                           test_explain.SNC_CAPS, '--vcpus', '1',
                           '--ram', '512')
        self.assertEqual((0, ''), (rel.returncode, rel.stderr))
        self.assertEqual(0o600, os.stat(sock).st_mode & 0o777)

        # A second server cannot take the socket; the first one stops
        # cleanly and removes it.
        second = self.command('explain', '--serve', sock)
        self.assertEqual(2, second.returncode)
        self.assertIn('an explain server already answers there',
                      second.stderr)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(0, proc.wait(timeout=30))
        self.assertFalse(os.path.exists(sock))

    def test_no_server(self):
        sock = os.path.join(self.tmp, 'none.sock')
        status, out, err = self.run_main(
            'explain', '--server', sock, '--vcpus', '1', '--ram', '512')
        self.assertEqual((2, ''), (status, out))
        self.assertIn('no answer from the explain server at %s' % sock, err)
        self.assertIn('nova-kvmx explain --serve %s' % sock, err)

    def test_the_client_does_not_import_nova(self):
        proc = subprocess.run(
            [sys.executable, '-c',
             'import sys; from nova_kvmx.cmd import main, serve; '
             'print(sorted(m for m in sys.modules if m == "nova" or '
             'm.startswith(("nova.", "oslo", "libvirt"))))'],
            cwd=test_explain_cli.REPO_ROOT, capture_output=True, text=True,
            timeout=60)
        self.assertEqual(('[]\n', ''), (proc.stdout, proc.stderr))

    def test_server_arguments(self):
        self.assertEqual(['explain', '--vcpus', '1'], main.without_server(
            ['explain', '--server', 's', '--vcpus', '1']))
        self.assertEqual(['explain'], main.without_server(
            ['explain', '--server=s']))
