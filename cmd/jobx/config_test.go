package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestLoadEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		etcd    []string
		nsqd    []string
		etcdErr string
		gateway string
	}{
		{"defaults use etcd's port 2379 and nsqd's 4150", nil,
			[]string{"http://127.0.0.1:2379"}, []string{"127.0.0.1:4150"}, "", "http://127.0.0.1:8080"},
		{"JobX's variables are honoured", map[string]string{"MR_ETCD_HOST": "etcd1", "MR_ETCD_PORT": "4001", "MR_ETCD_IS_SSL": "1", "MR_NSQD_HOSTS": "q1,q2:4155"},
			[]string{"https://etcd1:4001"}, []string{"q1", "q2:4155"}, "", "http://127.0.0.1:8080"},
		{"jobx's variables win over JobX's", map[string]string{"JOBX_ETCD": "a:1,b:2", "MR_ETCD_HOST": "x", "JOBX_NSQD": "n:1", "MR_NSQD_HOSTS": "m", "JOBX_GATEWAY": "http://gw"},
			[]string{"a:1", "b:2"}, []string{"n:1"}, "", "http://gw"},
		{"a bad port names the variable", map[string]string{"MR_ETCD_PORT": "http"},
			[]string{"http://127.0.0.1:http"}, []string{"127.0.0.1:4150"}, "MR_ETCD_PORT", "http://127.0.0.1:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := loadEnv(func(k string) string { return tc.env[k] })
			if !reflect.DeepEqual(c.Etcd, tc.etcd) || !reflect.DeepEqual(c.NSQD, tc.nsqd) || c.Gateway != tc.gateway {
				t.Errorf("got etcd %v nsqd %v gateway %q", c.Etcd, c.NSQD, c.Gateway)
			}
			if tc.etcdErr == "" && c.EtcdErr != nil || tc.etcdErr != "" && (c.EtcdErr == nil || !strings.Contains(c.EtcdErr.Error(), tc.etcdErr)) {
				t.Errorf("EtcdErr = %v, want mention of %q", c.EtcdErr, tc.etcdErr)
			}
		})
	}
}

func TestAddressNormalisation(t *testing.T) {
	eps, err := etcdEndpoints([]string{"h", "h:1", "https://s", "http://[::1]:5/"})
	if err != nil || !reflect.DeepEqual(eps, []string{"http://h:2379", "http://h:1", "https://s:2379", "http://[::1]:5"}) {
		t.Errorf("etcdEndpoints = %v, %v", eps, err)
	}
	addrs, err := nsqdAddrs([]string{"q", "q:7"})
	if err != nil || !reflect.DeepEqual(addrs, []string{"q:4150", "q:7"}) {
		t.Errorf("nsqdAddrs = %v, %v", addrs, err)
	}
	if _, err := etcdEndpoints([]string{"ftp://x"}); err == nil {
		t.Error("ftp endpoint accepted")
	}
}

func TestBadEtcdEnvironmentIsReportedWhenUsed(t *testing.T) {
	r := func(args ...string) (int, string) {
		var out, errb syncBuffer
		code := run(t.Context(), args, strings.NewReader(""), &out, &errb, func(k string) string {
			return map[string]string{"MR_ETCD_PORT": "nope"}[k]
		})
		return code, errb.String()
	}
	if code, stderr := r("workflow", "list"); code == 0 || !strings.Contains(stderr, "MR_ETCD_PORT") {
		t.Errorf("exit %d, stderr %q: want an error naming MR_ETCD_PORT", code, stderr)
	}
	if code, _ := r("version"); code != 0 {
		t.Errorf("version failed (exit %d) although it needs no etcd", code)
	}
}

func TestDaemonAddressesComeFromTheEnvironment(t *testing.T) {
	c := loadEnv(func(k string) string {
		return map[string]string{"JOBX_LOOKUPD": "l1, l2:4171", "JOBX_HTTP": ":9000", "JOBX_METRICS_ADDR": ":9090",
			"JOBX_NSQD_HTTP": "n1:4151", "JOBX_CONTAINERD": "/c.sock"}[k]
	})
	if !reflect.DeepEqual(c.Lookupd, []string{"l1", "l2:4171"}) || c.HTTP != ":9000" || c.MetricsAddr != ":9090" ||
		!reflect.DeepEqual(c.NSQDHTTP, []string{"n1:4151"}) || c.Containerd != "/c.sock" {
		t.Errorf("got %+v", c)
	}
	addrs, err := lookupdAddrs(c.Lookupd)
	if err != nil || !reflect.DeepEqual(addrs, []string{"l1:4161", "l2:4171"}) {
		t.Errorf("lookupdAddrs = %v, %v", addrs, err)
	}
	if _, err := lookupdAddrs([]string{"http://l1:4161"}); err == nil || !strings.Contains(err.Error(), "--lookupd") {
		t.Errorf("a URL gave %v, want an error naming --lookupd", err)
	}
}
