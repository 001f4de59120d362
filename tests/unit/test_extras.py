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

"""Watchdog, RNG, boot menu, hidden hypervisor, HPET, video, pointer and
SCSI controller: the domain libvirt gets, with Nova's values and
defaults, validated against libvirt's schema."""

import ddt
from nova import exception as nova_exception
import testtools

from nova_kvmx import exception
from tests.unit import builders as b
from tests.unit import xml_schema


def attrs(element):
    return dict(element.attrib)


@ddt.ddt
class ExtrasTest(testtools.TestCase):

    def domain(self, extra_specs=None, settings=None, **props):
        xml = b.render_xml(
            inst=b.instance(flavor_obj=b.flavor(extra_specs=extra_specs)),
            image_meta=b.image(**props),
            driver_settings=b.settings(**(settings or {})))
        xml_schema.assert_valid_domain(self, xml)
        return xml_schema.parse(xml)

    def refused(self, error, extra_specs=None, settings=None, **props):
        return self.assertRaises(
            error, b.plan,
            inst=b.instance(flavor_obj=b.flavor(extra_specs=extra_specs)),
            image_meta=b.image(**props),
            driver_settings=b.settings(**(settings or {})))

    # -- watchdog ------------------------------------------------------

    def test_no_watchdog_by_default(self):
        self.assertEqual([], xml_schema.findall(self.domain(),
                                                './devices/watchdog'))

    @ddt.data('reset', 'poweroff', 'pause', 'none')
    def test_flavor_watchdog(self, action):
        dog = xml_schema.find(self.domain({'hw:watchdog_action': action}),
                              './devices/watchdog')
        self.assertEqual({'model': 'i6300esb', 'action': action},
                         attrs(dog))

    def test_image_watchdog_wins(self):
        dog = xml_schema.find(
            self.domain({'hw:watchdog_action': 'reset'},
                        hw_watchdog_action='pause'), './devices/watchdog')
        self.assertEqual('pause', dog.get('action'))

    def test_image_disables_the_flavors_watchdog(self):
        root = self.domain({'hw:watchdog_action': 'reset'},
                           hw_watchdog_action='disabled')
        self.assertEqual([], xml_schema.findall(root, './devices/watchdog'))

    def test_unknown_watchdog_action_is_novas_error(self):
        self.refused(nova_exception.InvalidWatchdogAction,
                     {'hw:watchdog_action': 'explode'})

    # -- RNG -----------------------------------------------------------

    def test_virtio_rng_by_default(self):
        rng = xml_schema.find(self.domain(), './devices/rng')
        self.assertEqual('virtio', rng.get('model'))
        backend = xml_schema.find(rng, 'backend')
        self.assertEqual({'model': 'random'}, attrs(backend))
        self.assertIsNone(backend.text)
        self.assertEqual([], xml_schema.findall(rng, 'rate'))

    def test_rng_dev_path(self):
        rng = xml_schema.find(
            self.domain(settings={'rng_dev_path': '/dev/hwrng'}),
            './devices/rng')
        self.assertEqual('/dev/hwrng', xml_schema.find(rng, 'backend').text)

    def test_rng_not_allowed(self):
        root = self.domain({'hw_rng:allowed': 'False'})
        self.assertEqual([], xml_schema.findall(root, './devices/rng'))

    def test_rng_rate(self):
        rng = xml_schema.find(self.domain({
            'hw_rng:rate_bytes': '1024', 'hw_rng:rate_period': '2000'}),
            './devices/rng')
        self.assertEqual({'bytes': '1024', 'period': '2000'},
                         attrs(xml_schema.find(rng, 'rate')))

    def test_rate_without_period_is_refused_by_name(self):
        ex = self.refused(exception.UnsupportedKey,
                          {'hw_rng:rate_bytes': '1024'})
        self.assertIn('hw_rng:rate_bytes', str(ex))

    # -- boot menu, hidden hypervisor, HPET ----------------------------

    def test_no_boot_menu_by_default(self):
        self.assertEqual([], xml_schema.findall(self.domain(),
                                                './os/bootmenu'))

    @ddt.data(({'hw:boot_menu': 'yes'}, {}, 'yes'),
              ({'hw:boot_menu': 'yes'}, {'hw_boot_menu': False}, None),
              ({}, {'hw_boot_menu': True}, 'yes'))
    @ddt.unpack
    def test_boot_menu(self, specs, props, enabled):
        menus = xml_schema.findall(self.domain(specs, **props),
                                   './os/bootmenu')
        self.assertEqual([enabled] if enabled else [],
                         [m.get('enable') for m in menus])

    @ddt.data(({'hide_hypervisor_id': 'true'}, {}),
              ({'hw:hide_hypervisor_id': 'true'}, {}),
              ({}, {'img_hide_hypervisor_id': True}))
    @ddt.unpack
    def test_hide_hypervisor_id(self, specs, props):
        hidden = xml_schema.find(self.domain(specs, **props),
                                 './features/kvm/hidden')
        self.assertEqual('on', hidden.get('state'))

    def test_hypervisor_id_shown_by_default(self):
        self.assertEqual([], xml_schema.findall(self.domain(),
                                                './features/kvm'))

    @ddt.data((None, 'no'), (False, 'no'), (True, 'yes'))
    @ddt.unpack
    def test_hpet(self, asked, present):
        props = {} if asked is None else {'hw_time_hpet': asked}
        timer = xml_schema.find(self.domain(**props),
                                "./clock/timer[@name='hpet']")
        self.assertEqual(present, timer.get('present'))

    # -- video and pointer ---------------------------------------------

    VNC = {'vnc_listen': '127.0.0.1'}

    def test_vnc_guest_has_virtio_video_and_usb_tablet(self):
        root = self.domain(settings=self.VNC)
        self.assertEqual('virtio', xml_schema.find(
            root, './devices/video/model').get('type'))
        self.assertEqual({'type': 'tablet', 'bus': 'usb'}, attrs(
            xml_schema.find(root, "./devices/input[@type='tablet']")))

    def test_no_tablet_unless_pointer_model_usbtablet(self):
        root = self.domain(settings=dict(self.VNC, pointer_model=None))
        self.assertEqual([], xml_schema.findall(
            root, "./devices/input[@type='tablet']"))

    def test_image_pointer_model(self):
        root = self.domain(settings=dict(self.VNC, pointer_model=None),
                           hw_pointer_model='usbtablet')
        self.assertEqual(1, len(xml_schema.findall(
            root, "./devices/input[@type='tablet']")))

    @ddt.data('usb', 'virtio')
    def test_input_bus_for_tablet_and_keyboard(self, bus):
        root = self.domain(settings=self.VNC, hw_input_bus=bus)
        self.assertEqual(
            {'tablet': bus, 'keyboard': bus},
            {e.get('type'): e.get('bus') for e in xml_schema.findall(
                root, './devices/input') if e.get('bus') != 'ps2'})

    def test_video_model_and_ram(self):
        model = xml_schema.find(
            self.domain({'hw_video:ram_max_mb': '64'}, settings=self.VNC,
                        hw_video_model='vga', hw_video_ram=32),
            './devices/video/model')
        self.assertEqual({'type': 'vga', 'vram': str(32 * 1024)},
                         attrs(model))

    def test_video_ram_over_the_flavors_limit_is_novas_error(self):
        self.refused(nova_exception.RequestedVRamTooHigh,
                     {'hw_video:ram_max_mb': '16'}, settings=self.VNC,
                     hw_video_ram=32)

    def test_no_video_or_tablet_without_a_console(self):
        root = self.domain()
        self.assertEqual([], xml_schema.findall(root, './devices/video'))
        self.assertEqual([], xml_schema.findall(
            root, "./devices/input[@type='tablet']"))

    @ddt.data({'hw_video_model': 'vga'}, {'hw_pointer_model': 'usbtablet'},
              {'hw_input_bus': 'virtio'})
    def test_console_devices_without_a_console_are_refused(self, props):
        ex = self.refused(exception.UnsupportedKey, **props)
        self.assertIn(list(props)[0], str(ex))

    # -- disks ---------------------------------------------------------

    @ddt.data('unmap', 'ignore')
    def test_disk_discard(self, mode):
        root = self.domain(settings={'disk_discard': mode})
        self.assertEqual([mode], [d.get('discard') for d in xml_schema.findall(
            root, "./devices/disk[@device='disk']/driver")])

    def test_no_discard_unless_configured(self):
        root = self.domain()
        self.assertEqual([None], [d.get('discard') for d in xml_schema.findall(
            root, './devices/disk/driver')])

    # -- SCSI controller -----------------------------------------------

    def test_virtio_scsi_controller(self):
        root = self.domain(hw_disk_bus='scsi', hw_scsi_model='virtio-scsi')
        controller = xml_schema.find(
            root, "./devices/controller[@type='scsi']")
        self.assertEqual({'type': 'scsi', 'index': '0',
                          'model': 'virtio-scsi'}, attrs(controller))
        self.assertEqual('scsi', xml_schema.find(
            root, './devices/disk/target').get('bus'))

    def test_emulated_hba_is_refused_by_name(self):
        ex = self.refused(exception.UnsupportedKey, hw_disk_bus='scsi',
                          hw_scsi_model='lsilogic')
        self.assertIn('hw_scsi_model', str(ex))
