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

"""The host side of volumes: os-brick's connectors made and called with
Nova's options (this machine has no iSCSI initiator: the connectors are
stand-ins recording their calls, fed the connection info of Cinder's real
drivers), the connector properties Cinder gets, the RBD check's
configuration and messages, and a detach waiting for libvirt's events."""

import configparser
import copy
import threading
from unittest import mock

import ddt
import fixtures
from lxml import etree
from nova import exception
from nova.virt.libvirt import event as libvirtevent
from os_brick import exception as brick_exception
from os_brick import initiator
from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx import exception as kvmx_exception
from nova_kvmx.guest import volumes as guest_volumes
from nova_kvmx.host import device_events
from nova_kvmx import volume_ops
from nova_kvmx import volumes
from tests.unit import builders as b
from tests.unit import volume_data as vd

CONF = cfg.CONF


class FakeConnector(object):
    def __init__(self, protocol, root_helper, **kwargs):
        self.protocol = protocol
        self.kwargs = kwargs
        self.calls = []
        self.fail = None

    def connect_volume(self, data):
        self.calls.append(('connect', copy.deepcopy(data)))
        if self.fail:
            raise self.fail
        if self.protocol == initiator.FIBRE_CHANNEL:
            return {'type': 'block', 'path': '/dev/dm-3',
                    'multipath_id': '3600601601234c9d8a0b1c2d3e4f5a6b7'}
        return {'type': 'block', 'path': '/dev/sdx'}

    def disconnect_volume(self, data, device_info, force=False):
        self.calls.append(('disconnect', device_info, force))

    def extend_volume(self, data):
        self.calls.append(('extend',))
        return 2 * 1024 ** 3


def without_path(info):
    info = copy.deepcopy(info)
    info['data'].pop('device_path', None)
    info['data'].pop('multipath_id', None)
    return info


@ddt.ddt
class ConnectorTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.made = []

        def factory(protocol, root_helper, **kwargs):
            self.made.append(FakeConnector(protocol, root_helper, **kwargs))
            return self.made[-1]

        self.useFixture(fixtures.MockPatch(
            'os_brick.initiator.connector.InitiatorConnector.factory',
            side_effect=factory))
        self.volumes = volumes.HostVolumes(mock.Mock())
        self.instance = b.instance()
        self.instance.host = 'compute-7'

    @ddt.data(
        ('iscsi', initiator.ISCSI, dict(
            use_multipath=True, device_scan_attempts=7, transport='default',
            enforce_multipath=False)),
        ('iser', initiator.ISER, dict(
            use_multipath=False, device_scan_attempts=5, transport='iser',
            enforce_multipath=False)),
        ('fibre_channel', initiator.FIBRE_CHANNEL, dict(
            use_multipath=True, device_scan_attempts=7,
            enforce_multipath=False)),
        ('nvmeof', initiator.NVME, dict(
            use_multipath=True, device_scan_attempts=5,
            enforce_multipath=False)),
        ('scaleio', initiator.SCALEIO, dict(device_scan_attempts=7)),
        ('storpool', initiator.STORPOOL, {}),
        ('lightos', initiator.LIGHTOS, dict(device_scan_attempts=5)),
    )
    @ddt.unpack
    def test_made_with_novas_options(self, kind, protocol, kwargs):
        self.conf.config(volume_use_multipath=True, num_volume_scan_tries=7,
                         group='libvirt')
        connector = self.volumes.connector(kind)
        self.assertEqual((protocol, kwargs), (connector.protocol,
                                              connector.kwargs))
        self.assertIs(connector, self.volumes.connector(kind))

    def test_iscsi_iface(self):
        self.conf.config(iscsi_iface='cxgb4i.00:07:43:28:b2:58',
                         group='libvirt')
        self.assertEqual('cxgb4i.00:07:43:28:b2:58',
                         self.volumes.connector('iscsi').kwargs['transport'])

    @ddt.data((vd.ISCSI, '/dev/sdx'), (vd.FIBRE_CHANNEL, '/dev/dm-3'),
              (vd.NVMEOF, '/dev/sdx'), (vd.ISCSI_MULTIPATH, '/dev/sdx'))
    @ddt.unpack
    def test_connect_adds_the_device(self, template, path):
        info = without_path(template)
        self.volumes.connect(info, self.instance)
        self.assertEqual(path, info['data']['device_path'])
        self.assertEqual('connect', self.made[0].calls[0][0])
        if template is vd.FIBRE_CHANNEL:
            self.assertEqual(vd.FIBRE_CHANNEL['data']['multipath_id'],
                             info['data']['multipath_id'])

    def test_connect_failure_names_the_volume(self):
        connector = self.volumes.connector('iscsi')
        connector.fail = brick_exception.VolumeDeviceNotFound(
            device='/dev/disk/by-path/ip-10.20.0.21:3260-x')
        ex = self.assertRaises(kvmx_exception.VolumeConnectFailed,
                               self.volumes.connect, without_path(vd.ISCSI),
                               self.instance)
        self.assertIsInstance(ex, exception.VolumeAttachFailed)
        self.assertIn(vd.VOLUME_ID, str(ex))
        self.assertIn('os-brick could not connect the iscsi volume', str(ex))

    def test_unsupported_refused_before_connecting(self):
        self.assertRaises(kvmx_exception.UnsupportedVolumeType,
                          self.volumes.connect,
                          {'driver_volume_type': 'nfs',
                           'serial': vd.VOLUME_ID, 'data': {}},
                          self.instance)
        self.assertEqual([], self.made)

    @ddt.data((vd.ISCSI, None), (vd.NVMEOF, None),
              (vd.FIBRE_CHANNEL, vd.FIBRE_CHANNEL['data']))
    @ddt.unpack
    def test_disconnect(self, info, device_info):
        self.volumes.disconnect(None, copy.deepcopy(info), self.instance,
                                force=True)
        self.assertEqual([('disconnect', device_info, True)],
                         self.made[0].calls)

    def test_disconnect_rbd_and_local_touch_nothing(self):
        self.volumes.disconnect(None, vd.RBD, self.instance)
        self.volumes.disconnect(None, dict(vd.ISCSI,
                                           driver_volume_type='local'),
                                self.instance)
        self.assertEqual([], self.made)

    def test_multiattach_kept_while_another_guest_here_has_it(self):
        info = dict(copy.deepcopy(vd.ISCSI), multiattach=True)
        api = self.useFixture(fixtures.MockPatch(
            'nova.volume.cinder.API.get')).mock
        api.return_value = {'attachments': {'a': {}, 'b': {}}}
        self.useFixture(fixtures.MockPatch(
            'nova.objects.InstanceList.get_uuids_by_host',
            return_value=['a', 'b']))
        self.volumes.disconnect(None, info, self.instance)
        self.assertEqual([], self.made)
        api.return_value = {'attachments': {'a': {}, 'c': {}}}
        self.volumes.disconnect(None, info, self.instance)
        self.assertEqual('disconnect', self.made[0].calls[0][0])

    def test_connect_all_undoes_on_failure(self):
        first = mock.MagicMock()
        first.__getitem__.side_effect = {
            'connection_info': without_path(vd.ISCSI)}.__getitem__
        second = mock.MagicMock()
        second.__getitem__.side_effect = {'connection_info': {
            'driver_volume_type': 'nfs', 'serial': vd.OTHER_VOLUME_ID,
            'data': {}}}.__getitem__
        self.assertRaises(kvmx_exception.UnsupportedVolumeType,
                          self.volumes.connect_all, None, self.instance,
                          [first, second])
        first.save.assert_called_once_with()
        self.assertEqual(['connect', 'disconnect'],
                         [c[0] for c in self.made[0].calls])

    def test_extend(self):
        self.assertEqual(2 * 1024 ** 3, self.volumes.extend(
            vd.ISCSI, self.instance, 2 * 1024 ** 3))
        self.assertEqual([('extend',)], self.made[0].calls)


class ConnectorPropertiesTest(testtools.TestCase):
    def test_novas_options(self):
        conf = self.useFixture(config_fixture.Config(CONF))
        conf.config(my_block_storage_ip='10.20.0.5', host='compute-7')
        conf.config(volume_use_multipath=True, group='libvirt')
        props = self.useFixture(fixtures.MockPatch(
            'os_brick.initiator.connector.get_connector_properties',
            return_value={'ip': '10.20.0.5'})).mock
        self.assertEqual({'ip': '10.20.0.5'},
                         volumes.connector_properties())
        props.assert_called_once_with(
            'sudo nova-rootwrap /etc/nova/rootwrap.conf', '10.20.0.5', True,
            enforce_multipath=True, host='compute-7')

    def test_enforce_multipath_needs_multipath(self):
        conf = self.useFixture(config_fixture.Config(CONF))
        conf.config(volume_enforce_multipath=True, group='libvirt')
        self.assertRaises(exception.InvalidConfiguration,
                          volumes.check_multipath)


@ddt.ddt
class RBDCheckTest(testtools.TestCase):
    DISK = guest_volumes.plan_volume(
        vd.RBD, guest_volumes.DiskInfo('vdb', 'virtio'),
        guest_volumes.VolumeSettings())

    def test_probe_conf_keeps_the_hosts_and_sets_timeouts(self):
        system = ('[global]\nmon host = 10.20.0.11\n'
                  'client mount timeout = 300\n'
                  '[client.cinder]\nrados_osd_op_timeout = 0\n')
        parser = configparser.RawConfigParser(default_section='\0')
        parser.read_string(volumes.probe_conf(system, 'cinder', 5))
        self.assertEqual('10.20.0.11', parser.get('global', 'mon host'))
        self.assertFalse(parser.has_option('global', 'client mount timeout'))
        self.assertEqual(
            {'client_mount_timeout': '5', 'rados_mon_op_timeout': '5',
             'rados_osd_op_timeout': '5'}, dict(parser['client.cinder']))

    def test_probe_conf_without_a_system_conf(self):
        self.assertIn('[client.cinder]',
                      volumes.probe_conf('', 'cinder', 3))
        self.assertIn('[client]', volumes.probe_conf('garbage', None, 3))

    def test_image_opts(self):
        self.assertEqual(
            'driver=rbd,pool=volumes,image=volume-%s,user=cinder,'
            'key-secret=sec0,server.0.host=10.20.0.11,server.0.port=6789,'
            'server.1.host=10.20.0.12,server.1.port=6789,'
            'server.2.host=10.20.0.13,server.2.port=6789,conf=/t/c,,x'
            % vd.VOLUME_ID, volumes.rbd_image_opts(self.DISK, '/t/c,x',
                                                   True))

    @ddt.data(
        ("qemu-img: Could not open 'driver=rbd,...': error reading header "
         "from volume-x: No such file or directory", 'does not exist'),
        ("qemu-img: Could not open 'driver=rbd,...': error connecting: "
         "Connection timed out", 'libvirt secret %s did not let '
         'client.cinder in within 5 s (monitors 10.20.0.11:6789 answer): '
         'wrong key, or no quorum' % vd.SECRET_UUID),
        ("qemu-img: Could not open 'driver=rbd,...': error opening pool "
         "volumes: Operation not permitted", 'may not open'),
    )
    @ddt.unpack
    def test_reasons(self, said, reason):
        self.assertIn(reason, volumes._rbd_reason(
            self.DISK, said, ['10.20.0.11:6789'], 5))

    def setup_host(self, secret_error=None, value=b'key'):
        host = mock.Mock()
        conn = host.get_connection.return_value
        if secret_error is not None:
            conn.secretLookupByUUIDString.side_effect = secret_error
        conn.secretLookupByUUIDString.return_value.value.return_value = \
            value
        return volumes.HostVolumes(host)

    def libvirt_error(self, code):
        import libvirt
        error = libvirt.libvirtError('secret')
        error.get_error_code = lambda: code
        return error

    def test_missing_secret(self):
        import libvirt
        host = self.setup_host(self.libvirt_error(libvirt.VIR_ERR_NO_SECRET))
        ex = self.assertRaises(kvmx_exception.VolumeConnectFailed,
                               host.check_rbd, self.DISK, b.instance())
        self.assertIn('libvirt secret %s (client.cinder\'s key) is not '
                      'defined on this host' % vd.SECRET_UUID, str(ex))

    def test_no_monitor_answers(self):
        self.useFixture(fixtures.MockPatch('nova_kvmx.volumes._accepts',
                                           return_value=False))
        ex = self.assertRaises(kvmx_exception.VolumeConnectFailed,
                               self.setup_host().check_rbd, self.DISK,
                               b.instance())
        self.assertIn('no Ceph monitor answers at 10.20.0.11:6789, '
                      '10.20.0.12:6789, 10.20.0.13:6789 (5 s', str(ex))

    def test_opens(self):
        self.useFixture(fixtures.MockPatch('nova_kvmx.volumes._accepts',
                                           return_value=True))
        execute = self.useFixture(fixtures.MockPatch(
            'oslo_concurrency.processutils.execute',
            return_value=('{"virtual-size": 1073741824}', ''))).mock
        self.assertEqual({'virtual-size': 1073741824},
                         self.setup_host().check_rbd(self.DISK,
                                                     b.instance()))
        args = execute.call_args[0]
        self.assertEqual(('qemu-img', 'info', '--output', 'json',
                          '--object'), args[:5])
        self.assertTrue(args[5].startswith('secret,id=sec0,file='))

    def test_extend_only_what_cinder_grew(self):
        self.useFixture(fixtures.MockPatch('nova_kvmx.volumes._accepts',
                                           return_value=True))
        self.useFixture(fixtures.MockPatch(
            'oslo_concurrency.processutils.execute',
            return_value=('{"virtual-size": 2147483648}', '')))
        host = self.setup_host()
        self.assertEqual(2 * 1024 ** 3, host.extend(
            vd.RBD, b.instance(), 2 * 1024 ** 3))
        ex = self.assertRaises(exception.VolumeExtendFailed, host.extend,
                               vd.RBD, b.instance(), 3 * 1024 ** 3)
        self.assertIn('its RBD image is 2147483648 bytes, not the '
                      '3221225472 bytes Cinder reports', str(ex))
        self.assertIn(vd.VOLUME_ID, str(ex))

    def test_private_secret_not_checked(self):
        import libvirt
        self.useFixture(fixtures.MockPatch('nova_kvmx.volumes._accepts',
                                           return_value=True))
        execute = self.useFixture(fixtures.MockPatch(
            'oslo_concurrency.processutils.execute')).mock
        host = self.setup_host()
        secret = host.host.get_connection.return_value.\
            secretLookupByUUIDString.return_value
        secret.value.side_effect = self.libvirt_error(
            libvirt.VIR_ERR_OPERATION_DENIED)
        host.check_rbd(self.DISK, b.instance())
        execute.assert_not_called()

    def test_open_failure(self):
        self.useFixture(fixtures.MockPatch('nova_kvmx.volumes._accepts',
                                           return_value=True))
        self.useFixture(fixtures.MockPatch(
            'oslo_concurrency.processutils.execute',
            side_effect=processutils.ProcessExecutionError(
                stderr="qemu-img: Could not open 'x': error connecting: "
                       "Connection timed out")))
        ex = self.assertRaises(kvmx_exception.VolumeConnectFailed,
                               self.setup_host().check_rbd, self.DISK,
                               b.instance())
        self.assertIn('did not let client.cinder in within 5 s', str(ex))


class FakeGuest(object):
    """A domain whose guest releases a detached disk after ``delay`` tries
    (None: never), telling ``events`` as libvirt would."""

    def __init__(self, events, releases_after=1, fail=False):
        self.events = events
        self.releases_after = releases_after
        self.fail = fail
        self.persistent = True
        self.live = True
        self.requests = 0

    def get_power_state(self, host):
        return 1

    def has_persistent_configuration(self):
        return True

    def find(self, persistent=False):
        present = self.persistent if persistent else self.live
        return mock.Mock(alias='ua-' + vd.VOLUME_ID) if present else None

    def detach_device(self, conf, persistent=False, live=False):
        if persistent:
            self.persistent = False
            return
        self.requests += 1
        if self.fail:
            event = libvirtevent.DeviceRemovalFailedEvent(
                b.INSTANCE_UUID, conf.alias)
        elif (self.releases_after is not None and
                self.requests >= self.releases_after):
            self.live = False
            event = libvirtevent.DeviceRemovedEvent(b.INSTANCE_UUID,
                                                    conf.alias)
        else:
            return
        threading.Timer(0.01, self.events.notify, [event]).start()


class DetachTest(testtools.TestCase):
    """Nova's detach: the definition first, then the running guest, asked
    again until libvirt's event says the device is gone."""

    def setUp(self):
        super().setUp()
        conf = self.useFixture(config_fixture.Config(CONF))
        conf.config(device_detach_attempts=3, device_detach_timeout=1,
                    group='libvirt')
        self.events = device_events.DeviceEvents()
        self.ops = volume_ops.VolumeOperations(mock.Mock(), None,
                                               self.events)
        self.ops._live = lambda guest: True

    def detach(self, guest):
        self.ops.detach_device(guest, b.instance(), guest.find, 'vdb')

    def test_released_on_the_second_request(self):
        guest = FakeGuest(self.events, releases_after=2)
        self.detach(guest)
        self.assertEqual((2, False, False), (guest.requests,
                                             guest.persistent, guest.live))
        self.assertEqual(set(), self.events._waiters)

    def test_never_released(self):
        guest = FakeGuest(self.events, releases_after=None)
        ex = self.assertRaises(exception.DeviceDetachFailed, self.detach,
                               guest)
        self.assertEqual(3, guest.requests)
        self.assertIn('did not release it after 3 requests', str(ex))
        self.assertEqual(set(), self.events._waiters)

    def test_removal_failed_event(self):
        guest = FakeGuest(self.events, fail=True)
        ex = self.assertRaises(exception.DeviceDetachFailed, self.detach,
                               guest)
        self.assertIn('DeviceRemovalFailedEvent', str(ex))
        self.assertEqual(1, guest.requests)

    def test_not_there(self):
        guest = FakeGuest(self.events)
        guest.persistent = guest.live = False
        self.assertRaises(exception.DeviceNotFound, self.detach, guest)

    def test_events_of_other_devices_ignored(self):
        waiter = self.events.create_waiter(b.INSTANCE_UUID, 'ua-a',
                                           [libvirtevent.DeviceRemovedEvent])
        self.assertFalse(self.events.notify(libvirtevent.DeviceRemovedEvent(
            b.INSTANCE_UUID, 'ua-b')))
        self.assertTrue(self.events.notify(libvirtevent.DeviceRemovedEvent(
            b.INSTANCE_UUID, 'ua-a')))
        self.assertIsInstance(self.events.wait(waiter, 0),
                              libvirtevent.DeviceRemovedEvent)


class SwappedDefinitionTest(testtools.TestCase):
    def test_new_serial_and_alias(self):
        live = ("<domain><devices><disk type='network'><source "
                "protocol='rbd' name='volumes/new'/><target dev='vdb' "
                "bus='virtio'/><serial>old</serial><alias name='ua-old'/>"
                "</disk><disk type='file'><target dev='vda'/><serial>x"
                "</serial></disk></devices></domain>")
        conf = mock.Mock(serial='new', alias='ua-new')
        root = etree.fromstring(volume_ops.swapped_definition(live, 'vdb',
                                                              conf))
        self.assertEqual(['new', 'x'], [d.findtext('serial') for d in
                                        root.findall('devices/disk')])
        self.assertEqual('ua-new', root.find('devices/disk/alias').get(
            'name'))
