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

"""XML built to attack its parser, given to ``nova-kvmx`` where an
operator gives it XML: an external entity naming a private file, and a
billion laughs (entities nested ten deep, each ten times the last).

The commands run with lxml's default parser as lxml before 5.2 had it
(external entities resolved), which ``requirements.txt`` once allowed:
what is checked is that the driver's own parser, not lxml's defaults,
keeps the file out and the entities unexpanded, and that the operator
gets one line saying what is wrong.
"""

import io
import json
import os
import re
import shutil
import socket

import fixtures
import nova.conf
from lxml import etree
from nova.pci import request as pci_request
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx.cmd import main
from nova_kvmx import safe_xml

CONF = nova.conf.CONF
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
CAPS = os.path.join(DATA, 'topology-2socket-snc2-smt.xml')
DEVICES = os.path.join(DATA, 'nodedev-dump-snc')
SECRET = 'kvmx-private-3d1f0c9a'
REFUSED = re.escape('a document type declaration (<!DOCTYPE>) is not '
                    'accepted: libvirt\'s XML has none')
# libxml2 2.11 and later stop the expansion themselves, as they read the
# declarations.
LAUGHS_REFUSED = '(%s|not well-formed XML: Maximum entity amplification ' \
    'factor exceeded)' % REFUSED


def external_entity(root, path):
    return '<!DOCTYPE %s [<!ENTITY private SYSTEM "file://%s">]>\n' % (
        root, path)


def billion_laughs(root):
    levels = ['<!ENTITY lol0 "lol">'] + [
        '<!ENTITY lol%d "%s">' % (n, '&lol%d;' % (n - 1) * 10)
        for n in range(1, 10)]
    return '<!DOCTYPE %s [\n%s\n]>\n' % (root, '\n'.join(levels))


def with_doctype(path, doctype, element, reference):
    """The XML of ``path`` with ``doctype`` before its root and
    ``reference`` as the text of its first ``element``."""
    with open(path) as f:
        text = f.read()
    start = text.index('>', text.index('<%s' % element)) + 1
    end = text.index('</%s>' % element, start)
    # Neither file has an XML declaration, which would come first.
    return doctype + text[:start] + reference + text[end:]


class LegacyLxmlDefaults(fixtures.Fixture):
    """lxml's default parser as in lxml < 5.2: external entities are
    resolved (set for this thread, as lxml keeps it)."""

    def _setUp(self):
        etree.set_default_parser(etree.XMLParser(resolve_entities=True))
        self.addCleanup(etree.set_default_parser)


class HostileXMLTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(config_fixture.Config(CONF))
        self.useFixture(fixtures.FakeLogger())
        self.addCleanup(pci_request.get_alias_from_config.cache_clear)
        self.useFixture(LegacyLxmlDefaults())
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.private = self.write('private', SECRET + '\n')
        self.conf = self.write('nova.conf', '[kvmx]\nvirt_type = qemu\n')

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def run_main(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        status = main.main(list(argv), out=out, err=err)
        output = out.getvalue() + err.getvalue()
        self.assertNotIn(SECRET, output)
        self.assertNotIn('lollollol', output)
        return status, out.getvalue(), err.getvalue()

    def assertRefused(self, status, out, err, path, message=REFUSED):
        self.assertEqual((2, ''), (status, out))
        self.assertEqual(1, len(err.splitlines()), err)
        self.assertRegex(err, '^nova-kvmx explain: error: Cannot read %s: '
                         '%s' % (re.escape(path), message))


class ExplainTest(HostileXMLTestCase):

    def explain(self, caps, *args):
        return self.run_main('explain', '--config-file', self.conf,
                             '--capabilities', caps, '--vcpus', '1',
                             '--ram', '512', *args)

    def test_the_unaltered_files_fit(self):
        status, out, err = self.explain(CAPS, '--node-devices', DEVICES)
        self.assertEqual((0, ''), (status, err), out)

    def test_capabilities_with_an_external_entity(self):
        caps = self.write('caps.xml', with_doctype(
            CAPS, external_entity('capabilities', self.private), 'uuid',
            '&private;'))
        self.assertRefused(*self.explain(caps), path=caps)

    def test_capabilities_with_a_billion_laughs(self):
        caps = self.write('caps.xml', with_doctype(
            CAPS, billion_laughs('capabilities'), 'uuid', '&lol9;'))
        self.assertRefused(*self.explain(caps), path=caps,
                           message=LAUGHS_REFUSED)

    def node_devices(self, doctype, reference):
        dump = os.path.join(self.tmp, 'dump')
        shutil.copytree(DEVICES, dump)
        vf = os.path.join(dump, 'pci_0000_81_02_1.xml')
        text = with_doctype(vf, doctype, 'product', reference)
        with open(vf, 'w') as f:
            f.write(text)
        return dump, vf

    def test_node_device_with_an_external_entity(self):
        dump, vf = self.node_devices(
            external_entity('device', self.private), '&private;')
        self.assertRefused(*self.explain(CAPS, '--node-devices', dump),
                           path=vf)

    def test_node_device_with_a_billion_laughs(self):
        dump, vf = self.node_devices(billion_laughs('device'), '&lol9;')
        self.assertRefused(*self.explain(CAPS, '--node-devices', dump),
                           path=vf, message=LAUGHS_REFUSED)


class HostCheckTest(HostileXMLTestCase):
    """host-check's XML is libvirt's: here libvirt's test driver, which
    reads the host (and its domains) from the file its URI names, and
    refuses both (libvirt's own parser resolves no entity)."""

    def assertLibvirtRefuses(self, node_xml):
        path = self.write('node.xml', node_xml)
        status, out, err = self.run_main(
            'host-check', '--config-file', self.conf, '--root', self.tmp,
            '--format', 'json', '--connection-uri', 'test://' + path)
        self.assertEqual('', err)
        [found] = [r for r in json.loads(out) if r['name'] == 'libvirt']
        self.assertEqual('WARN', found['status'])
        self.assertIn('Cannot connect to libvirt at test://%s: ' % path,
                      found['detail'])

    def node(self, doctype, reference):
        return ('<?xml version="1.0"?>\n%s<node><cpu><nodes>1</nodes>'
                '<sockets>1</sockets><cores>2</cores><threads>1</threads>'
                '<active>2</active><mhz>2000</mhz><model>%s</model></cpu>'
                '<memory>2097152</memory><domain type="test"><name>%s'
                '</name><memory>1024</memory><os><type>hvm</type></os>'
                '</domain></node>\n' % (doctype, reference, reference))

    def test_external_entity(self):
        self.assertLibvirtRefuses(self.node(
            external_entity('node', self.private), '&private;'))

    def test_billion_laughs(self):
        self.assertLibvirtRefuses(self.node(billion_laughs('node'), '&lol9;'))


class ParserTest(testtools.TestCase):
    """The parser itself, whatever lxml's defaults."""

    def setUp(self):
        super().setUp()
        self.useFixture(LegacyLxmlDefaults())

    def test_libvirt_xml_is_parsed(self):
        root = safe_xml.fromstring(
            "<?xml version='1.0' encoding='UTF-8'?>\n<domain type='kvm'>"
            "<name>a &amp; b</name></domain>")
        self.assertEqual('a & b', root.findtext('name'))

    def test_no_network(self):
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(('127.0.0.1', 0))
        listener.listen(1)
        listener.settimeout(0.5)
        url = 'http://127.0.0.1:%d/x' % listener.getsockname()[1]
        for doc in ('<!DOCTYPE d SYSTEM "%s"><d>&e;</d>' % url,
                    '<!DOCTYPE d [<!ENTITY e SYSTEM "%s">]><d>&e;</d>' % url,
                    '<!DOCTYPE d [<!ENTITY %% p SYSTEM "%s"> %%p;]><d/>'
                    % url):
            self.assertRaises(etree.XMLSyntaxError, safe_xml.fromstring, doc)
            self.assertRaises(socket.timeout, listener.accept)

    def test_refused_where_it_is(self):
        ex = self.assertRaises(
            safe_xml.DoctypeRefused, safe_xml.fromstring,
            '<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY e "x">]><d>&e;</d>')
        self.assertEqual(2, ex.lineno)
