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

"""Emulated TPMs: the <tpm> of a guest, the host's swtpm support and
traits, and the libvirt secret's lifetime by hw:tpm_secret_security."""

from unittest import mock

import ddt
from nova import exception as nova_exception
from nova import objects
import os_traits as ot
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx import exception
from nova_kvmx.guest import render
from nova_kvmx.host import tpm as host_tpm
from nova_kvmx import vtpm_secret
from tests.unit import builders as b
from tests.unit import test_traits
from tests.unit import xml_schema

SECRET = '0b7c5b6e-3a1d-4c2e-9f8a-6d5e4c3b2a19'
TPM_HOST = b.settings(tpm_versions=('1.2', '2.0'),
                      tpm_models=('tpm-tis', 'tpm-crb'),
                      tpm_secret_security=('user', 'host'))


def instance(specs=None, secret=SECRET):
    inst = b.instance(flavor_obj=b.flavor(extra_specs=specs))
    inst.system_metadata = {'vtpm_secret_uuid': secret} if secret else {}
    return inst


def plan(specs=None, settings=TPM_HOST, secret=SECRET, **props):
    return b.plan(inst=instance(specs, secret), image_meta=b.image(**props),
                  driver_settings=settings)


@ddt.ddt
class VTPMDeviceTest(testtools.TestCase):

    @ddt.data(({'hw:tpm_version': '2.0'}, {}, '2.0', 'tpm-tis'),
              ({'hw:tpm_version': '2.0', 'hw:tpm_model': 'tpm-crb'}, {},
               '2.0', 'tpm-crb'),
              ({}, {'hw_tpm_version': '1.2'}, '1.2', 'tpm-tis'))
    @ddt.unpack
    def test_tpm_in_the_domain(self, specs, props, version, model):
        xml = render.render_domain(plan(specs, **props))
        xml_schema.assert_valid_domain(self, xml)
        tpm = xml_schema.find(xml_schema.parse(xml), './devices/tpm')
        self.assertEqual(model, tpm.get('model'))
        backend = tpm.find('backend')
        self.assertEqual(('emulator', version),
                         (backend.get('type'), backend.get('version')))
        self.assertEqual(SECRET, backend.find('encryption').get('secret'))

    def test_no_tpm_unless_asked(self):
        xml = render.render_domain(plan())
        self.assertEqual([], xml_schema.parse(xml).findall('./devices/tpm'))

    def test_swtpm_disabled_refuses_by_name(self):
        ex = self.assertRaises(exception.UnsupportedKey, plan,
                               {'hw:tpm_version': '2.0'}, b.settings())
        self.assertIn('hw:tpm_version', str(ex))
        self.assertIn('swtpm_enabled', str(ex))
        ex = self.assertRaises(exception.UnsupportedKey, plan, None,
                               b.settings(), hw_tpm_version='2.0')
        self.assertIn('hw_tpm_version', str(ex))

    def test_model_the_host_lacks(self):
        settings = b.settings(tpm_versions=('2.0',), tpm_models=('tpm-tis',),
                              tpm_secret_security=('user',))
        ex = self.assertRaises(
            exception.UnsupportedKey, plan,
            {'hw:tpm_version': '2.0', 'hw:tpm_model': 'tpm-crb'}, settings)
        self.assertIn('hw:tpm_model', str(ex))

    def test_secret_security_the_host_does_not_offer(self):
        ex = self.assertRaises(
            exception.UnsupportedKey, plan,
            {'hw:tpm_version': '2.0',
             'hw:tpm_secret_security': 'deployment'})
        self.assertIn('hw:tpm_secret_security', str(ex))

    def test_nova_refuses_crb_with_1_2(self):
        self.assertRaises(nova_exception.Invalid, plan,
                          {'hw:tpm_version': '1.2',
                           'hw:tpm_model': 'tpm-crb'})

    def test_no_secret_no_tpm(self):
        ex = self.assertRaises(nova_exception.Invalid, plan,
                               {'hw:tpm_version': '2.0'}, secret=None)
        self.assertIn('no secret', str(ex))


class HostTPMTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(cfg.CONF)).conf
        import nova.conf  # noqa: F401 (registers [libvirt])

    def test_off_without_swtpm_enabled(self):
        support = host_tpm.tpm_support(
            self.conf, test_traits.captured_domcaps(), 'kvm')
        self.assertFalse(support)
        traits = host_tpm.tpm_traits(support)
        self.assertEqual({ot.COMPUTE_SECURITY_TPM_1_2: False,
                          ot.COMPUTE_SECURITY_TPM_2_0: False,
                          ot.COMPUTE_SECURITY_TPM_TIS: False,
                          ot.COMPUTE_SECURITY_TPM_CRB: False}, traits)

    def test_swtpm_enabled_reports_as_nova(self):
        self.conf.set_override('swtpm_enabled', True, group='libvirt')
        self.conf.set_override('swtpm_user', 'root', group='libvirt')
        self.conf.set_override('swtpm_group', 'root', group='libvirt')
        with mock.patch('shutil.which', return_value='/usr/bin/swtpm'):
            support = host_tpm.tpm_support(
                self.conf, test_traits.captured_domcaps(), 'kvm')
        self.assertEqual(host_tpm.TPMSupport(
            versions=('1.2', '2.0'), models=('tpm-tis', 'tpm-crb'),
            secret_security=('user', 'host', 'deployment')), support)
        present = {t for t, on in host_tpm.tpm_traits(support).items()
                   if on}
        self.assertEqual({ot.COMPUTE_SECURITY_TPM_1_2,
                          ot.COMPUTE_SECURITY_TPM_2_0,
                          ot.COMPUTE_SECURITY_TPM_TIS,
                          ot.COMPUTE_SECURITY_TPM_CRB,
                          ot.COMPUTE_SECURITY_TPM_SECRET_SECURITY_USER,
                          ot.COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST,
                          ot.COMPUTE_SECURITY_TPM_SECRET_SECURITY_DEPLOYMENT},
                         present)

    def test_without_swtpm_nova_compute_stops(self):
        self.conf.set_override('swtpm_enabled', True, group='libvirt')
        with mock.patch('shutil.which', return_value=None):
            ex = self.assertRaises(
                nova_exception.InvalidConfiguration, host_tpm.tpm_support,
                self.conf, test_traits.captured_domcaps(), 'kvm')
        self.assertIn('swtpm', str(ex))

    def test_missing_swtpm_user(self):
        self.conf.set_override('swtpm_enabled', True, group='libvirt')
        self.conf.set_override('swtpm_user', 'no-such-user-kvmx',
                               group='libvirt')
        with mock.patch('shutil.which', return_value='/usr/bin/swtpm'):
            ex = self.assertRaises(
                nova_exception.InvalidConfiguration, host_tpm.tpm_support,
                self.conf, test_traits.captured_domcaps(), 'kvm')
        self.assertIn('swtpm_user', str(ex))


class FakeSecret(object):
    def __init__(self, log, uuid):
        self.log, self.uuid = log, uuid

    def undefine(self):
        self.log.append(('undefine', self.uuid))


class FakeHost(object):
    def __init__(self, existing=None):
        self.log = []
        self.existing = existing

    def find_secret(self, usage_type, usage_id):
        self.log.append(('find', usage_type, usage_id))
        return self.existing

    def create_secret(self, usage_type, usage_id, password=None, uuid=None,
                      **kwargs):
        self.log.append(('create', usage_type, usage_id, password, uuid,
                         kwargs))
        return FakeSecret(self.log, uuid)


@ddt.ddt
class SecretLifetimeTest(testtools.TestCase):
    """hw:tpm_secret_security: how long libvirt holds the passphrase."""

    def instance(self, security=None):
        specs = {'hw:tpm_version': '2.0'}
        if security:
            specs['hw:tpm_secret_security'] = security
        inst = instance(specs)
        inst.system_metadata = {}
        self.assertTrue(vtpm_secret.wanted(inst, b.image()))
        return inst

    def started(self, host, inst):
        with mock.patch('nova.vtpm.get_or_create_secret',
                        return_value=(SECRET, b'pass')), \
                mock.patch.object(objects.Instance, 'image_meta',
                                  b.image()):
            with vtpm_secret.defined(host, b.context(), inst):
                host.log.append('launch')
        return host.log

    @ddt.data(None, 'user', 'deployment')
    def test_defined_only_while_starting(self, security):
        inst = self.instance(security)
        self.assertEqual(
            [('create', 'vtpm', inst.uuid, b'pass', SECRET, {}), 'launch',
             ('undefine', SECRET)], self.started(FakeHost(), inst))

    def test_host_security_keeps_it_defined(self):
        inst = self.instance('host')
        self.assertEqual(
            [('find', 'vtpm', inst.uuid),
             ('create', 'vtpm', inst.uuid, b'pass', SECRET,
              {'ephemeral': False, 'private': False}), 'launch'],
            self.started(FakeHost(), inst))
        host = FakeHost(existing=FakeSecret([], SECRET))
        self.assertEqual([('find', 'vtpm', inst.uuid), 'launch'],
                         self.started(host, inst))

    def test_guest_without_tpm(self):
        inst = instance()
        host = FakeHost()
        with mock.patch.object(objects.Instance, 'image_meta', b.image()):
            with vtpm_secret.defined(host, b.context(), inst):
                pass
        self.assertEqual([], host.log)

    def test_a_move_is_refused(self):
        inst = self.instance()
        with mock.patch.object(objects.Instance, 'image_meta', b.image()):
            ex = self.assertRaises(nova_exception.MigrationPreCheckError,
                                   vtpm_secret.refuse_move, inst)
        self.assertIn('emulated TPM', str(ex))
