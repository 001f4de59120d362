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

"""UEFI firmware and Secure Boot: chosen as Nova's libvirt driver chooses
them, rendered as libvirt 9.0 takes them, kept across a new definition."""

import json
import os

import ddt
import fixtures
import libvirt
from nova import exception as nova_exception
from nova.virt.libvirt import config as vconfig
import testtools

from nova_kvmx import exception
from nova_kvmx.guest import firmware
from nova_kvmx.guest import planner
from nova_kvmx.guest import render
from nova_kvmx.host import firmware as host_firmware
from nova_kvmx import live_migration
from tests.unit import builders as b
from tests.unit import test_traits
from tests.unit import xml_schema

UEFI_HOST = b.settings(uefi=True, secure_boot=True, stateless_firmware=True)
OVMF = '/usr/share/OVMF/OVMF_CODE_4M.fd'
OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd'
DEBIAN_DESCRIPTORS = '/usr/share/qemu/firmware'
NVRAM = '/var/lib/libvirt/qemu/nvram/instance-00000001_VARS.fd'

# A running UEFI guest's <os> as libvirt 9.0 shows it once it chose.
RUNNING = """<domain type='kvm'><name>instance-00000001</name>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <firmware><feature enabled='no' name='secure-boot'/></firmware>
    <loader readonly='yes' type='pflash'>%s</loader>
    <nvram template='%s'>%s</nvram>
  </os>
  <features><acpi/><apic/>%%s</features>
</domain>""" % (OVMF, OVMF_VARS, NVRAM)


def plan(specs=None, settings=UEFI_HOST, **props):
    return b.plan(inst=b.instance(flavor_obj=b.flavor(extra_specs=specs)),
                  image_meta=b.image(**props), driver_settings=settings)


def os_of(guest):
    """The rendered domain (schema-checked by the caller) and its <os>."""
    xml = render.render_domain(guest)
    return xml, xml_schema.parse(xml).find('os')


@ddt.ddt
class PlanFirmwareTest(testtools.TestCase):

    @ddt.data(
        # (flavor extra specs, image properties, host) -> secure boot
        ({}, {}, UEFI_HOST, None),
        ({}, {'hw_firmware_type': 'bios'}, UEFI_HOST, None),
        ({}, {'hw_firmware_type': 'uefi'}, UEFI_HOST, False),
        ({'os:secure_boot': 'disabled'}, {'hw_firmware_type': 'uefi'},
         UEFI_HOST, False),
        ({'os:secure_boot': 'required'}, {'hw_firmware_type': 'uefi'},
         UEFI_HOST, True),
        ({}, {'hw_firmware_type': 'uefi', 'os_secure_boot': 'required'},
         UEFI_HOST, True),
        ({}, {'hw_firmware_type': 'uefi', 'os_secure_boot': 'optional'},
         UEFI_HOST, True),
        # Optional: only where the host can.
        ({}, {'hw_firmware_type': 'uefi', 'os_secure_boot': 'optional'},
         b.settings(uefi=True), False),
        ({}, {'hw_firmware_type': 'uefi', 'os_secure_boot': 'optional',
              'hw_machine_type': 'pc'}, UEFI_HOST, False),
        # Secure Boot without UEFI: Nova's libvirt driver boots the BIOS.
        ({'os:secure_boot': 'required'}, {}, UEFI_HOST, None),
    )
    @ddt.unpack
    def test_secure_boot(self, specs, props, settings, secure):
        guest = plan(specs, settings, **props)
        if secure is None:
            self.assertIsNone(guest.firmware)
        else:
            self.assertEqual(secure, guest.firmware.secure_boot)

    @ddt.data(
        ({}, {'hw_firmware_type': 'uefi'}, b.settings(),
         nova_exception.UEFINotSupported),
        ({'os:secure_boot': 'required'}, {'hw_firmware_type': 'uefi'},
         b.settings(uefi=True), nova_exception.SecureBootNotSupported),
        ({}, {'hw_firmware_type': 'uefi', 'os_secure_boot': 'required',
              'hw_machine_type': 'pc'}, UEFI_HOST,
         nova_exception.SecureBootNotSupported),
        ({'os:secure_boot': 'required'},
         {'hw_firmware_type': 'uefi', 'os_secure_boot': 'disabled'},
         UEFI_HOST, nova_exception.FlavorImageConflict),
    )
    @ddt.unpack
    def test_nova_errors(self, specs, props, settings, error):
        self.assertRaises(error, plan, specs, settings, **props)

    def test_stateless_only_with_uefi(self):
        self.assertTrue(plan(hw_firmware_type='uefi',
                             hw_firmware_stateless=True).firmware.stateless)
        self.assertIsNone(plan(hw_firmware_stateless=True).firmware)

    def test_stateless_where_the_host_has_none_is_refused(self):
        ex = self.assertRaises(
            exception.UnsupportedKey, plan, None,
            b.settings(uefi=True, secure_boot=True), hw_firmware_type='uefi',
            hw_firmware_stateless=True)
        self.assertIn('hw_firmware_stateless', str(ex))

    def test_aarch64_defaults_to_uefi(self):
        settings = b.settings(arch='aarch64', machine_type='virt',
                              uefi=True)
        self.assertIsNotNone(firmware.plan_firmware(
            b.flavor(), b.image(), 'virt', settings))


class RenderFirmwareTest(testtools.TestCase):

    def test_new_guest_lets_libvirt_choose(self):
        xml, os_el = os_of(plan(hw_firmware_type='uefi'))
        xml_schema.assert_valid_domain(self, xml)
        self.assertEqual('efi', os_el.get('firmware'))
        feature = os_el.find('firmware/feature')
        self.assertEqual(('secure-boot', 'no'),
                         (feature.get('name'), feature.get('enabled')))
        # libvirt 9.0 refuses <loader secure='no'> beside autoselection.
        self.assertIsNone(os_el.find('loader'))
        self.assertIsNone(os_el.find('nvram'))

    def test_secure_boot(self):
        xml, os_el = os_of(plan({'os:secure_boot': 'required'},
                                hw_firmware_type='uefi'))
        xml_schema.assert_valid_domain(self, xml)
        self.assertEqual('yes', os_el.find('firmware/feature').get(
            'enabled'))
        self.assertEqual('yes', os_el.find('loader').get('secure'))

    def test_stateless(self):
        xml, os_el = os_of(plan(hw_firmware_type='uefi',
                                hw_firmware_stateless=True))
        xml_schema.assert_valid_domain(self, xml)
        self.assertEqual('yes', os_el.find('loader').get('stateless'))

    def test_bios_guest_has_no_firmware_element(self):
        _, os_el = os_of(plan())
        self.assertIsNone(os_el.get('firmware'))
        self.assertIsNone(os_el.find('loader'))


class KeptFirmwareTest(testtools.TestCase):
    """A domain defined again for the instance keeps the firmware and
    NVRAM libvirt chose for the first."""

    def test_chosen_firmware_of_a_running_domain(self):
        chosen = firmware.chosen_firmware(RUNNING % "<smm state='on'/>")
        self.assertEqual(firmware.Chosen(
            loader=OVMF, loader_type='pflash', readonly=True, secure=False,
            nvram=NVRAM, nvram_template=OVMF_VARS, smm=True), chosen)
        self.assertEqual((OVMF, OVMF_VARS), chosen.files())

    def test_none_before_libvirt_chose(self):
        self.assertIsNone(firmware.chosen_firmware(
            "<domain><os firmware='efi'><type>hvm</type></os></domain>"))
        self.assertIsNone(firmware.chosen_firmware(
            '<domain><os><type>hvm</type></os></domain>'))

    def test_kept_files_rendered(self):
        chosen = firmware.chosen_firmware(RUNNING % '')
        guest = b.plan(image_meta=b.image(hw_firmware_type='uefi'),
                       driver_settings=UEFI_HOST)
        self.assertIsNone(guest.firmware.kept)
        guest = plan_kept(chosen)
        xml, os_el = os_of(guest)
        xml_schema.assert_valid_domain(self, xml)
        self.assertIsNone(os_el.get('firmware'))
        loader = os_el.find('loader')
        self.assertEqual((OVMF, 'pflash', 'yes', 'no'), (
            loader.text, loader.get('type'), loader.get('readonly'),
            loader.get('secure')))
        nvram = os_el.find('nvram')
        self.assertEqual((NVRAM, OVMF_VARS),
                         (nvram.text, nvram.get('template')))
        self.assertIsNone(xml_schema.parse(xml).find('features/smm'))

    def test_smm_kept(self):
        xml, _ = os_of(plan_kept(firmware.chosen_firmware(
            RUNNING % "<smm state='on'/>")))
        self.assertIsNotNone(xml_schema.parse(xml).find('features/smm'))

    def test_secure_boot_changed_chooses_again(self):
        guest = plan_kept(firmware.chosen_firmware(RUNNING % ''),
                          specs={'os:secure_boot': 'required'})
        self.assertIsNone(guest.firmware.kept)
        _, os_el = os_of(guest)
        self.assertEqual('efi', os_el.get('firmware'))


def plan_kept(chosen, specs=None):
    return planner.plan_guest(
        b.context(), b.instance(flavor_obj=b.flavor(extra_specs=specs)),
        b.image(hw_firmware_type='uefi'), b.files(), UEFI_HOST,
        chosen_firmware=chosen)


class HostFirmwareTest(testtools.TestCase):

    def test_debian_ovmf(self):
        support = host_firmware.firmware_support(
            test_traits.captured_domcaps())
        self.assertEqual(host_firmware.FirmwareSupport(
            uefi=True, secure_boot=True, stateless=False), support)
        self.assertTrue(host_firmware.firmware_support(
            test_traits.captured_domcaps(), stateless=True).stateless)

    def test_no_firmware_descriptors(self):
        caps = vconfig.LibvirtConfigDomainCaps()
        caps.parse_str(
            "<domainCapabilities><path>/usr/bin/qemu-system-x86_64</path>"
            "<domain>kvm</domain><machine>pc-q35-7.2</machine>"
            "<arch>x86_64</arch><os supported='yes'>"
            "<loader supported='yes'><enum name='type'><value>rom</value>"
            "<value>pflash</value></enum></loader></os>"
            "</domainCapabilities>")
        self.assertEqual(host_firmware.FirmwareSupport(),
                         host_firmware.firmware_support(caps, True))


class FakeVersionHost(object):
    def __init__(self, recent=True):
        self.recent = recent

    def has_min_version(self, lv_ver=None, hv_ver=None, hv_type=None):
        return self.recent


def descriptor(device='flash', mode=None, arch='x86_64'):
    mapping = {'device': device,
               'executable': {'filename': '/fw/CODE.fd', 'format': 'raw'}}
    if mode:
        mapping['mode'] = mode
    return {'interface-types': ['uefi'], 'mapping': mapping,
            'targets': [{'architecture': arch, 'machines': ['pc-q35-*']}]}


@ddt.ddt
class StatelessDescriptorsTest(testtools.TestCase):
    """Whether libvirt has a UEFI firmware without NVRAM to choose, from
    QEMU's firmware descriptors."""

    def stateless(self, descriptors, recent=True, later=()):
        dirs = [self.useFixture(fixtures.TempDir()).path for _ in range(2)]
        for directory, items in zip(dirs, (descriptors, later)):
            for name, content in items:
                with open(os.path.join(directory, name), 'w') as f:
                    f.write(content if isinstance(content, str)
                            else json.dumps(content))
        return host_firmware.has_stateless_firmware(
            FakeVersionHost(recent), 'x86_64', dirs)

    def test_debian_12_descriptors_have_none(self):
        self.assertFalse(host_firmware.has_stateless_firmware(
            FakeVersionHost(), 'x86_64', [DEBIAN_DESCRIPTORS]))

    @ddt.data((descriptor(mode='stateless'), True),
              (descriptor(device='memory'), True),
              (descriptor(), False),
              (descriptor(mode='split'), False),
              (descriptor(device='memory', arch='aarch64'), False))
    @ddt.unpack
    def test_descriptor(self, content, stateless):
        self.assertEqual(stateless, self.stateless([('50-fw.json',
                                                     content)]))

    def test_old_libvirt(self):
        self.assertFalse(self.stateless(
            [('50-fw.json', descriptor(mode='stateless'))], recent=False))

    def test_unreadable_descriptor_skipped(self):
        self.assertTrue(self.stateless(
            [('40-bad.json', '{not json'),
             ('50-fw.json', descriptor(mode='stateless'))]))

    def test_later_directory_replaces_a_descriptor(self):
        self.assertFalse(self.stateless(
            [('50-fw.json', descriptor(mode='stateless'))],
            later=[('50-fw.json', descriptor())]))


class FakeGuest(object):
    def __init__(self, xml, fail=False):
        self.xml = xml
        self.fail = fail
        self.undefined = []

    def delete_configuration(self, keep_vtpm=False, keep_nvram=False):
        self.undefined.append((keep_vtpm, keep_nvram))
        if self.fail and not keep_nvram:
            raise libvirt.libvirtError('cannot remove NVRAM')


class FakeHost(object):
    def __init__(self, fail=False):
        self.fail = fail
        self.guests = []

    def write_instance_config(self, xml):
        self.guests.append(FakeGuest(xml, self.fail))
        return self.guests[-1]


class LeftNVRAMTest(testtools.TestCase):
    """After a live migration, libvirt 9.0 leaves the source's NVRAM, a
    file of libvirtd's that libvirt removes: a placeholder domain naming
    it is defined and undefined with it."""

    def test_libvirt_removes_it_with_a_placeholder(self):
        host = FakeHost()
        live_migration.remove_nvram(
            host, RUNNING % '<smm state="on"/>', b.instance())
        [guest] = host.guests
        # Kept: the vTPM state (it has none); removed: the NVRAM.
        self.assertEqual([(True, False)], guest.undefined)
        xml_schema.assert_valid_domain(self, guest.xml)
        root = xml_schema.parse(guest.xml)
        self.assertEqual('kvm', root.get('type'))
        self.assertEqual(NVRAM, root.findtext('os/nvram'))
        self.assertEqual(OVMF_VARS, root.find('os/nvram').get('template'))
        self.assertEqual(OVMF, root.findtext('os/loader'))
        self.assertEqual(('x86_64', 'pc-q35-7.2'), (
            root.find('os/type').get('arch'),
            root.find('os/type').get('machine')))
        self.assertEqual(['acpi', 'apic', 'smm'],
                         [f.tag for f in root.find('features')])
        # No instance's name or UUID, no device, never started.
        self.assertNotEqual('instance-00000001', root.findtext('name'))
        self.assertEqual('kvmx-nvram-' + root.findtext('uuid'),
                         root.findtext('name'))
        self.assertIsNone(root.find('devices'))

    def test_a_failure_is_logged_and_the_placeholder_goes(self):
        host = FakeHost(fail=True)
        logs = self.useFixture(fixtures.FakeLogger())
        live_migration.remove_nvram(host, RUNNING % '', b.instance())
        self.assertEqual([(True, False), (True, True)],
                         host.guests[0].undefined)
        self.assertIn('Could not remove the NVRAM file %s' % NVRAM,
                      logs.output)

    def test_bios_guest_has_none(self):
        host = FakeHost()
        live_migration.remove_nvram(
            host, '<domain><os><type>hvm</type></os></domain>',
            b.instance())
        self.assertEqual([], host.guests)
