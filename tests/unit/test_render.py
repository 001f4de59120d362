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

"""Nova objects -> planned guest -> domain XML, element by element.

Every domain rendered here must first pass libvirt's own schema; then each
test reads back the elements its row is about. Whole-string comparisons
would break on harmless reordering and hide what a test means.
"""

import dataclasses

import ddt
import testtools

from nova_kvmx.guest import render
from nova_kvmx.guest import spec
from tests.unit import builders as b
from tests.unit import xml_schema


class DomainTestCase(testtools.TestCase):
    def domain(self, **kw):
        """Render with builders.plan's arguments, validate, parse."""
        xml = b.render_xml(**kw)
        xml_schema.assert_valid_domain(self, xml)
        return xml_schema.parse(xml)


def text(root, path):
    return xml_schema.find(root, path).text


@ddt.ddt
class BasicsTest(DomainTestCase):
    @ddt.data('kvm', 'qemu')
    def test_identity_and_size(self, virt_type):
        root = self.domain(
            inst=b.instance(flavor_obj=b.flavor(vcpus=3, memory_mb=1536)),
            driver_settings=b.settings(virt_type=virt_type))
        self.assertEqual(virt_type, root.get('type'))
        self.assertEqual('instance-00000001', text(root, 'name'))
        self.assertEqual(b.INSTANCE_UUID, text(root, 'uuid'))
        self.assertEqual(str(1536 * 1024), text(root, 'memory'))
        self.assertIsNone(xml_schema.find(root, 'memory').get('unit'))
        self.assertEqual('3', text(root, 'vcpu'))


@ddt.ddt
class OSTest(DomainTestCase):
    """Machine type, and direct kernel boot vs boot from the disk."""

    @ddt.data(({}, 'q35'), ({'hw_machine_type': 'pc-q35-7.2'}, 'pc-q35-7.2'))
    @ddt.unpack
    def test_machine_type(self, props, machine):
        os_type = xml_schema.find(self.domain(image_meta=b.image(**props)),
                                  'os/type')
        self.assertEqual(('hvm', machine), (os_type.text,
                                            os_type.get('machine')))

    @ddt.data(({}, 8, 8), ({'hw_machine_type': 'pc-q35-7.2'}, 3, 3),
              ({'hw_machine_type': 'pc'}, 8, 0), ({}, 0, 0))
    @ddt.unpack
    def test_pcie_root_ports(self, props, num_pcie_ports, expected):
        """[libvirt] num_pcie_ports hotplug slots on a q35 guest, as with
        Nova's libvirt driver; an i440fx ('pc') guest has none."""
        root = self.domain(image_meta=b.image(**props),
                           driver_settings=b.settings(
                               pcie_ports=num_pcie_ports))
        models = [c.get('model') for c in xml_schema.findall(
            root, "devices/controller[@type='pci']")]
        self.assertEqual(['pcie-root'] * bool(expected) +
                         ['pcie-root-port'] * expected, models)

    def test_disk_boot(self):
        root = self.domain(guest_files=b.files())
        self.assertEqual('hd', xml_schema.find(root, 'os/boot').get('dev'))
        self.assertEqual([], xml_schema.findall(
            root, 'os/kernel|os/initrd|os/cmdline'))

    @ddt.data(
        (True, {}, None),
        (False, {'os_command_line': 'console=ttyS0 nosmp'},
         'console=ttyS0 nosmp'),
    )
    @ddt.unpack
    def test_kernel_boot(self, ramdisk, props, cmdline):
        root = self.domain(guest_files=b.files(kernel=True, ramdisk=ramdisk),
                           image_meta=b.image(**props))
        self.assertEqual(b.INST_DIR + '/kernel', text(root, 'os/kernel'))
        self.assertEqual([b.INST_DIR + '/ramdisk'] if ramdisk else [],
                         [e.text for e in xml_schema.findall(root,
                                                             'os/initrd')])
        if cmdline is None:
            # The default: the root disk, and the kernel's console on the
            # serial port that the console log records.
            args = text(root, 'os/cmdline').split()
            self.assertIn('root=/dev/vda', args)
            self.assertIn('console=ttyS0', args)
        else:
            self.assertEqual(cmdline, text(root, 'os/cmdline'))
        self.assertEqual([], xml_schema.findall(root, 'os/boot'))


@ddt.ddt
class CPUTest(DomainTestCase):
    """<cpu>: mode and model from the settings, topology from Nova."""

    @ddt.data(
        (dict(virt_type='kvm'), {}, 'host-passthrough', None, ('2', '1', '1')),
        (dict(virt_type='qemu'), {}, None, None, ('2', '1', '1')),
        (dict(cpu_mode='custom', cpu_models=('Cascadelake-Server',)), {},
         'custom', 'Cascadelake-Server', ('2', '1', '1')),
        (dict(virt_type='kvm'), {'hw:cpu_sockets': '1', 'hw:cpu_threads': '2'},
         'host-passthrough', None, ('1', '1', '2')),
    )
    @ddt.unpack
    def test_cpu(self, settings, extra_specs, mode, model, topology):
        root = self.domain(
            inst=b.instance(flavor_obj=b.flavor(vcpus=2,
                                                extra_specs=extra_specs)),
            driver_settings=b.settings(**settings))
        cpu = xml_schema.find(root, 'cpu')
        self.assertEqual(mode, cpu.get('mode'))
        self.assertEqual([model] if model else [],
                         [e.text for e in cpu.findall('model')])
        top = xml_schema.find(cpu, 'topology')
        self.assertEqual(topology, (top.get('sockets'), top.get('cores'),
                                    top.get('threads')))


@ddt.ddt
class DiskTest(DomainTestCase):
    """Root disk on the image's bus; config drive a read-only SATA CD-ROM;
    the cache mode the host's instances directory allows."""

    @ddt.data(
        ({}, False, 'none', [('disk', 'vda', 'virtio', 'qcow2', False)]),
        ({'hw_disk_bus': 'scsi'}, False, 'none',
         [('disk', 'sda', 'scsi', 'qcow2', False)]),
        ({'hw_disk_bus': 'sata'}, True, 'writeback',
         [('disk', 'sda', 'sata', 'qcow2', False),
          ('cdrom', 'sdz', 'sata', 'raw', True)]),
        ({}, True, 'none', [('disk', 'vda', 'virtio', 'qcow2', False),
                            ('cdrom', 'sdz', 'sata', 'raw', True)]),
    )
    @ddt.unpack
    def test_disks(self, props, config_drive, cache, expected):
        root = self.domain(image_meta=b.image(**props),
                           guest_files=b.files(config_drive=config_drive),
                           driver_settings=b.settings(disk_cache=cache))
        disks = xml_schema.findall(root, 'devices/disk')
        self.assertEqual(expected, [
            (d.get('device'), d.find('target').get('dev'),
             d.find('target').get('bus'), d.find('driver').get('type'),
             d.find('readonly') is not None) for d in disks])
        self.assertEqual({cache}, {d.find('driver').get('cache')
                                   for d in disks})
        self.assertEqual(
            [b.INST_DIR + '/disk', b.INST_DIR + '/disk.config'][:len(disks)],
            [d.find('source').get('file') for d in disks])

    def test_preallocated_disks_native_io(self):
        # [DEFAULT] preallocate_images = space: the instance's own disk
        # files (not the config drive), as Nova's Qcow2 image backend.
        root = self.domain(
            inst=b.instance(flavor_obj=b.flavor(ephemeral_gb=1, swap=64)),
            guest_files=b.files(ephemeral=True, swap=True,
                                config_drive=True),
            driver_settings=b.settings(disk_io='native'))
        self.assertEqual(
            [('vda', 'native'), ('vdb', 'native'), ('vdc', 'native'),
             ('sdz', None)],
            [(d.find('target').get('dev'), d.find('driver').get('io'))
             for d in xml_schema.findall(root, 'devices/disk')])

    def test_overlays_name_their_bases_not_to_relabel(self):
        """Each overlay names its base in the image cache, which libvirt
        must leave to nova-compute's user (it never gives a backing file
        back); the config drive and the disks without one name none."""
        base = spec.BaseImage('/var/lib/nova/instances/_base/abc', 'raw')
        swap = spec.BaseImage('/var/lib/nova/instances/_base/swap_64', 'raw')
        files = b.files(ephemeral=True, swap=True, config_drive=True)
        files = dataclasses.replace(files, bases=(
            (files.root_disk, base), (files.swap, swap)))
        root = self.domain(
            inst=b.instance(flavor_obj=b.flavor(ephemeral_gb=1, swap=64)),
            guest_files=files)

        def chain(disk):
            backing = disk.find('backingStore')
            if backing is None:
                return None
            source = backing.find('source')
            label = source.find('seclabel')
            return (backing.get('type'), backing.find('format').get('type'),
                    source.get('file'), label.get('model'),
                    label.get('relabel'), len(backing.find('backingStore')))

        self.assertEqual(
            [('file', 'raw', base.path, 'dac', 'no', 0), None,
             ('file', 'raw', swap.path, 'dac', 'no', 0), None],
            [chain(d) for d in xml_schema.findall(root, 'devices/disk')])


@ddt.ddt
class RBDDiskTest(DomainTestCase):
    """[libvirt] images_type=rbd: the instance's disks are network disks
    QEMU opens through librbd, as Nova's Rbd image backend renders them;
    the config drive stays a local file."""

    def test_root_ephemeral_swap_on_rbd(self):
        root = self.domain(
            inst=b.instance(flavor_obj=b.flavor(ephemeral_gb=1, swap=64)),
            guest_files=b.rbd_files(ephemeral=True, swap=True,
                                    config_drive=True),
            driver_settings=b.settings(disk_cache='none',
                                       network_disk_cache='writeback'))
        disks = xml_schema.findall(root, 'devices/disk')
        self.assertEqual(
            [('network', 'vda', 'raw', 'writeback'),
             ('network', 'vdb', 'raw', 'writeback'),
             ('network', 'vdc', 'raw', 'writeback'),
             ('file', 'sdz', 'raw', 'none')],
            [(d.get('type'), d.find('target').get('dev'),
              d.find('driver').get('type'), d.find('driver').get('cache'))
             for d in disks])
        for disk, name in zip(disks, ('disk', 'disk.eph0', 'disk.swap')):
            source = disk.find('source')
            self.assertEqual(('rbd', 'vms/%s_%s' % (b.INSTANCE_UUID, name)),
                             (source.get('protocol'), source.get('name')))
            self.assertEqual(
                [('192.0.2.10', '6789'), ('192.0.2.11', '6789')],
                [(h.get('name'), h.get('port'))
                 for h in source.findall('host')])
            auth = disk.find('auth')
            self.assertEqual('nova', auth.get('username'))
            secret = auth.find('secret')
            self.assertEqual(('ceph', '5f0ad6c6-6c2b-4a1e-9d3e-2b0d8f1c9e11'),
                             (secret.get('type'), secret.get('uuid')))

    def test_without_cephx_no_auth(self):
        root = self.domain(guest_files=b.rbd_files(user=None))
        disk = xml_schema.find(root, 'devices/disk')
        self.assertEqual('network', disk.get('type'))
        self.assertIsNone(disk.find('auth'))

    def test_rescue_disk_local_rescued_root_on_rbd(self):
        files = dataclasses.replace(
            b.files(), rescued_root=b.rbd_image('disk'))
        root = self.domain(guest_files=files)
        disks = xml_schema.findall(root, 'devices/disk')
        self.assertEqual([('file', 'vda'), ('network', 'vdb')],
                         [(d.get('type'), d.find('target').get('dev'))
                          for d in disks])


@ddt.ddt
class ConsoleTest(DomainTestCase):
    def test_serial_console_is_logged(self):
        """virtlogd writes the serial port to console.log, which the console
        output API reads."""
        root = self.domain()
        serial = xml_schema.find(root, 'devices/serial')
        self.assertEqual('pty', serial.get('type'))
        log = xml_schema.find(serial, 'log')
        self.assertEqual((b.INST_DIR + '/console.log', 'on'),
                         (log.get('file'), log.get('append')))
        self.assertEqual('pty',
                         xml_schema.find(root, 'devices/console').get('type'))

    @ddt.data(None, '127.0.0.1', '::')
    def test_vnc_only_when_listening(self, listen):
        root = self.domain(driver_settings=b.settings(vnc_listen=listen))
        graphics = xml_schema.findall(root, 'devices/graphics')
        video = xml_schema.findall(root, 'devices/video')
        if listen is None:
            self.assertEqual(([], []), (graphics, video))
        else:
            self.assertEqual([('vnc', listen)], [
                (g.get('type'), g.get('listen')) for g in graphics])
            self.assertEqual(1, len(video))


@ddt.ddt
class GuestAgentTest(DomainTestCase):
    """``hw_qemu_guest_agent=yes``: the QEMU guest agent's virtio-serial
    channel, through which snapshots quiesce the guest."""

    @ddt.data('yes', 'true', '1')
    def test_channel_when_the_image_has_the_agent(self, value):
        root = self.domain(image_meta=b.image(hw_qemu_guest_agent=value))
        channels = xml_schema.findall(root, 'devices/channel')
        self.assertEqual(1, len(channels))
        self.assertEqual('unix', channels[0].get('type'))
        target = xml_schema.find(channels[0], 'target')
        self.assertEqual(('virtio', 'org.qemu.guest_agent.0'),
                         (target.get('type'), target.get('name')))
        # libvirt chooses the socket's path, in the domain's own directory.
        self.assertIsNone(channels[0].find('source'))

    @ddt.data({}, {'hw_qemu_guest_agent': 'no'})
    def test_no_channel_without_the_agent(self, props):
        root = self.domain(image_meta=b.image(**props))
        self.assertEqual([], xml_schema.findall(root, 'devices/channel'))

    def test_channel_element(self):
        self.assertEqual(
            '<channel type="unix">\n'
            '  <target type="virtio" name="org.qemu.guest_agent.0"/>\n'
            '</channel>\n', render.GuestAgentChannel().to_xml())


class SysinfoTest(DomainTestCase):
    def test_smbios_identifies_an_openstack_guest(self):
        """cloud-init and guest agents recognise a Nova guest by these."""
        root = self.domain(driver_settings=b.settings(package_version='2.1'))
        self.assertEqual('sysinfo', xml_schema.find(root,
                                                    'os/smbios').get('mode'))
        sysinfo = xml_schema.find(root, 'sysinfo')
        self.assertEqual('smbios', sysinfo.get('type'))
        self.assertEqual({
            'manufacturer': 'OpenStack Foundation',
            'product': 'OpenStack Nova',
            'version': '2.1',
            'serial': b.INSTANCE_UUID,
            'uuid': b.INSTANCE_UUID,
            'family': 'Virtual Machine',
        }, {e.get('name'): e.text for e in sysinfo.findall('system/entry')})


class MetadataTest(DomainTestCase):
    """Nova's metadata lets an operator reading ``virsh dumpxml`` find the
    server, its owner, flavor and image."""

    def test_nova_metadata(self):
        flavor = b.flavor(vcpus=4, memory_mb=2048, root_gb=10, ephemeral_gb=1,
                          swap=128, name='nfv.large', flavorid='nfv-large')
        root = self.domain(
            inst=b.instance(display_name='vnf-7', flavor_obj=flavor),
            ctxt=b.context('alice', 'nfv-lab'),
            driver_settings=b.settings(package_version='2.1'))
        meta = xml_schema.find(root, 'metadata/nova:instance')
        self.assertEqual('2.1', xml_schema.find(meta, 'nova:package').get(
            'version'))
        self.assertEqual('vnf-7', text(meta, 'nova:name'))
        fl = xml_schema.find(meta, 'nova:flavor')
        self.assertEqual(('nfv.large', 'nfv-large'),
                         (fl.get('name'), fl.get('id')))
        self.assertEqual(
            {'memory': '2048', 'vcpus': '4', 'disk': '10', 'ephemeral': '1',
             'swap': '128'},
            {k: text(fl, 'nova:' + k)
             for k in ('memory', 'vcpus', 'disk', 'ephemeral', 'swap')})
        user = xml_schema.find(meta, 'nova:owner/nova:user')
        project = xml_schema.find(meta, 'nova:owner/nova:project')
        self.assertEqual((b.USER_ID, 'alice', b.PROJECT_ID, 'nfv-lab'),
                         (user.get('uuid'), user.text, project.get('uuid'),
                          project.text))
        rootdisk = xml_schema.find(meta, 'nova:root')
        self.assertEqual(('image', b.IMAGE_ID),
                         (rootdisk.get('type'), rootdisk.get('uuid')))

    def test_no_root_image_without_image_id(self):
        root = self.domain(image_meta=b.image(with_id=False))
        self.assertEqual([], xml_schema.findall(
            root, 'metadata/nova:instance/nova:root'))


@ddt.ddt
class EscapingTest(DomainTestCase):
    """User-controlled strings are data, never markup: each comes back
    exactly, and an injection attempt creates no element."""

    @ddt.data(
        'web<1>',
        'R&D "edge" \'vnf\'',
        'Zürich-東京-Ελλάδα-😀',
        '</nova:name><evil/>',
        ']]><evil/><![CDATA[',
        '&amp; &#60; &lt;',
        ' leading and trailing\t\n',
        'line1\r\nline2',
    )
    def test_round_trip(self, hostile):
        flavor = b.flavor(name=hostile)
        root = self.domain(inst=b.instance(display_name=hostile,
                                           flavor_obj=flavor),
                           ctxt=b.context(user_name=hostile,
                                          project_name=hostile))
        meta = xml_schema.find(root, 'metadata/nova:instance')
        self.assertEqual(hostile, text(meta, 'nova:name'))
        self.assertEqual(hostile,
                         xml_schema.find(meta, 'nova:flavor').get('name'))
        self.assertEqual(hostile, text(meta, 'nova:owner/nova:user'))
        self.assertEqual(hostile, text(meta, 'nova:owner/nova:project'))
        self.assertEqual([], xml_schema.findall(
            root, '//*[local-name()="evil"]'))
