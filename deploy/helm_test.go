package deploy

import (
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const chart = "helm/refkeeper"

// The values files of the chart's tests: every optional part of a real
// deployment on, and the try-it-out parts on.
var valuesFiles = []string{"", "ci/all-on-values.yaml", "ci/standalone-values.yaml"}

// helmRun runs helm with its caches and config in a temporary home, so the
// test neither reads nor writes the user's.
func helmRun(tb testing.TB, args ...string) (string, error) {
	tb.Helper()
	home := tb.TempDir()
	env := []string{"HELM_CACHE_HOME=" + filepath.Join(home, "cache"), "HELM_CONFIG_HOME=" + filepath.Join(home, "config"),
		"HELM_DATA_HOME=" + filepath.Join(home, "data")}
	return run(tb, env, tool(tb, "helm"), args...)
}

// helmTemplate renders the chart as release "rk" in namespace "ci" with the
// values files and --set pairs given.
func helmTemplate(tb testing.TB, values string, set ...string) (string, error) {
	tb.Helper()
	args := []string{"template", "rk", chart, "--namespace", "ci"}
	if values != "" {
		args = append(args, "--values", filepath.Join(chart, values))
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return helmRun(tb, args...)
}

func TestHelmLint(t *testing.T) {
	for _, values := range valuesFiles {
		args := []string{"lint", "--strict", chart}
		if values != "" {
			args = append(args, "--values", filepath.Join(chart, values))
		}
		out, err := helmRun(t, args...)
		if err != nil || !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// rendered is the chart's output, decoded.
type rendered struct {
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	claims       []*corev1.PersistentVolumeClaim
	pdbs         []*policyv1.PodDisruptionBudget
	monitors     []*monitoringv1.ServiceMonitor
}

// decodeStrict decodes one YAML document into obj, failing on unknown
// fields, duplicate fields and fields whose case differs from the API's, as
// the API server's strict field validation does.
func decodeStrict(doc []byte, obj any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := k8sjson.UnmarshalStrict(js, obj, k8sjson.DisallowDuplicateFields, k8sjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// decodeRendered splits helm's output into objects and decodes each into
// the API type its apiVersion and kind name. A kind the chart is not meant
// to make fails the test: a Secret or ConfigMap above all, since secrets
// must come from Secrets the operator made.
func decodeRendered(tb testing.TB, out string) rendered {
	tb.Helper()
	var r rendered
	for _, doc := range strings.Split(out, "\n---") {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			tb.Fatalf("not YAML: %v\n%s", err, doc)
		}
		if tm.Kind == "" && tm.APIVersion == "" {
			if strings.TrimSpace(stripComments(doc)) != "" {
				tb.Fatalf("a document without apiVersion and kind:\n%s", doc)
			}
			continue
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 StatefulSet":
			o := &appsv1.StatefulSet{}
			r.statefulSets, obj = append(r.statefulSets, o), o
		case "v1 Service":
			o := &corev1.Service{}
			r.services, obj = append(r.services, o), o
		case "v1 PersistentVolumeClaim":
			o := &corev1.PersistentVolumeClaim{}
			r.claims, obj = append(r.claims, o), o
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			r.pdbs, obj = append(r.pdbs, o), o
		case "monitoring.coreos.com/v1 ServiceMonitor":
			o := &monitoringv1.ServiceMonitor{}
			r.monitors, obj = append(r.monitors, o), o
		default:
			tb.Fatalf("the chart renders %s %s, which it is not meant to:\n%s", tm.APIVersion, tm.Kind, doc)
		}
		if err := decodeStrict([]byte(doc), obj); err != nil {
			tb.Fatalf("%s %s does not decode strictly: %v\n%s", tm.APIVersion, tm.Kind, err, doc)
		}
	}
	return r
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// server is the refkeeper StatefulSet (component server) of a rendering.
func (r rendered) server(tb testing.TB) *appsv1.StatefulSet {
	tb.Helper()
	for _, s := range r.statefulSets {
		if s.Spec.Template.Labels["app.kubernetes.io/component"] == "server" {
			return s
		}
	}
	tb.Fatal("no refkeeper StatefulSet")
	return nil
}

func kinds(r rendered) map[string]int {
	return map[string]int{"StatefulSet": len(r.statefulSets), "Service": len(r.services),
		"PersistentVolumeClaim": len(r.claims), "PodDisruptionBudget": len(r.pdbs), "ServiceMonitor": len(r.monitors)}
}

// TestHelmTemplate renders the chart with the defaults and with each values
// file, decodes every object strictly, and checks what holds the objects
// together and what refkeeper is told.
func TestHelmTemplate(t *testing.T) {
	flags := knownServeFlags(t)
	for _, tc := range []struct {
		values string
		kinds  map[string]int
		check  func(t *testing.T, r rendered, c *corev1.Container)
	}{
		{"", map[string]int{"StatefulSet": 1, "Service": 2, "PersistentVolumeClaim": 1, "PodDisruptionBudget": 1}, func(t *testing.T, r rendered, c *corev1.Container) {
			s := r.server(t)
			if *s.Spec.Replicas != 1 || !slices.Equal(r.claims[0].Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
				t.Errorf("defaults: %d replicas on %v, want one on ReadWriteOnce", *s.Spec.Replicas, r.claims[0].Spec.AccessModes)
			}
			if r.claims[0].Annotations["helm.sh/resource-policy"] != "keep" {
				t.Error("the repos claim is not kept on uninstall")
			}
			wantArg(t, c, "--fetch-url=http://rk-refkeeper.ci.svc:8080")
			if len(c.Env) != 0 {
				t.Errorf("defaults set environment variables: %v", c.Env)
			}
		}},
		{"ci/all-on-values.yaml", map[string]int{"StatefulSet": 1, "Service": 2, "PersistentVolumeClaim": 1, "PodDisruptionBudget": 1, "ServiceMonitor": 1}, func(t *testing.T, r rendered, c *corev1.Container) {
			if got := *r.server(t).Spec.Replicas; got != 3 {
				t.Errorf("replicas = %d, want 3", got)
			}
			wantArg(t, c, "--fetch-url=https://refkeeper.example.com")
			wantArg(t, c, "--tokens-file=/etc/refkeeper/tokens/tokens")
			wantArg(t, c, "--fetch-token-keys-file=/etc/refkeeper/fetch-token-keys/keys")
			wantArg(t, c, "--credentials=/etc/refkeeper/credentials/credentials.json")
			wantArg(t, c, "--merge-identity=CI Merge <ci@example.com>")
			wantSecretEnv(t, c, "REFKEEPER_REDIS_URL", "refkeeper-redis", "redis-url")
			for _, env := range []string{"REFKEEPER_GITLAB_HOOK_TOKEN", "REFKEEPER_GITHUB_HOOK_SECRET", "REFKEEPER_GITEA_HOOK_SECRET"} {
				wantSecretEnv(t, c, env, "refkeeper-hooks", "")
			}
			m := r.monitors[0]
			if m.Labels["release"] != "kube-prometheus-stack" || len(m.Spec.Endpoints) != 1 || m.Spec.Endpoints[0].Path != "/metrics" {
				t.Errorf("ServiceMonitor: labels %v, endpoints %+v", m.Labels, m.Spec.Endpoints)
			}
		}},
		{"ci/standalone-values.yaml", map[string]int{"StatefulSet": 2, "Service": 3}, func(t *testing.T, r rendered, c *corev1.Container) {
			wantEnvValue(t, c, "REFKEEPER_REDIS_URL", "redis://rk-refkeeper-redis:6379/0")
			wantSecretEnv(t, c, "REFKEEPER_GITLAB_HOOK_TOKEN", "refkeeper-hooks", "gitlab-token")
			if env := envNamed(c, "REFKEEPER_GITHUB_HOOK_SECRET"); env != nil {
				t.Errorf("a hook key set empty still reaches the pod: %+v", env)
			}
			if v := volumeNamed(r.server(t).Spec.Template.Spec.Volumes, "data"); v == nil || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "my-repos" {
				t.Errorf("data volume = %+v, want the existing claim my-repos", v)
			}
			var redis *appsv1.StatefulSet
			for _, s := range r.statefulSets {
				if s.Name == "rk-refkeeper-redis" {
					redis = s
				}
			}
			if redis == nil {
				t.Fatal("no standalone Redis")
			}
			args := strings.Join(redis.Spec.Template.Spec.Containers[0].Args, " ")
			if !strings.Contains(args, "--appendonly yes") || len(redis.Spec.VolumeClaimTemplates) != 1 {
				t.Errorf("standalone Redis: args %q, %d volume claims; want the append-only file on a volume", args, len(redis.Spec.VolumeClaimTemplates))
			}
		}},
	} {
		t.Run(cmp(tc.values, "defaults"), func(t *testing.T) {
			out, err := helmTemplate(t, tc.values)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			r := decodeRendered(t, out)
			got := kinds(r)
			maps.DeleteFunc(got, func(_ string, n int) bool { return n == 0 })
			if !maps.Equal(got, tc.kinds) {
				t.Errorf("rendered %v, want %v", got, tc.kinds)
			}
			checkServer(t, r, flags)
			checkSelectors(t, r)
			s := r.server(t)
			tc.check(t, r, &s.Spec.Template.Spec.Containers[0])
		})
	}
}

func cmp(s, empty string) string {
	if s == "" {
		return empty
	}
	return s
}

// checkServer checks the refkeeper pod of any rendering: what it runs, that
// every flag and variable is one refkeeper knows and no secret is in args,
// that the kubelet waits longer than the shutdown budget, the probes, and
// that every mount has its volume.
func checkServer(t *testing.T, r rendered, flags serveFlags) {
	t.Helper()
	s := r.server(t)
	pod := s.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("args %q do not start with serve", c.Args)
	}
	// Flags that carry a secret's value; the chart hands secrets over as
	// files or secretKeyRef only.
	secretFlags := map[string]bool{"tokens": true, "fetch-token-keys": true, "redis": true,
		"gitlab-hook-token": true, "github-hook-secret": true, "gitea-hook-secret": true}
	var shutdown time.Duration
	for _, a := range c.Args[1:] {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Errorf("arg %q is not --flag=value", a)
			continue
		}
		if !flags.flags[name] {
			t.Errorf("arg %q: refkeeper serve has no --%s", a, name)
		}
		if secretFlags[name] {
			t.Errorf("arg %q puts a secret in args", a)
		}
		if name == "shutdown-timeout" {
			var err error
			if shutdown, err = time.ParseDuration(value); err != nil {
				t.Errorf("arg %q: %v", a, err)
			}
		}
	}
	wantArg(t, &c, "--role=all")
	if shutdown == 0 {
		t.Error("no --shutdown-timeout in args")
	}
	if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %v is not above --shutdown-timeout %v", grace, shutdown)
	}
	for _, e := range c.Env {
		if !flags.envs[e.Name] {
			t.Errorf("env %s is no variable refkeeper serve reads", e.Name)
		}
		if e.Value != "" && strings.Contains(e.Value, "@") {
			t.Errorf("env %s has a literal value with credentials: %q", e.Name, e.Value)
		}
		if e.ValueFrom != nil && (e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name == "") {
			t.Errorf("env %s is read from somewhere other than a Secret: %+v", e.Name, e.ValueFrom)
		}
	}
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	for _, p := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}, {"startup", c.StartupProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || !ports[p.probe.HTTPGet.Port.String()] {
			t.Errorf("%s probe = %+v, want GET %s on a port of the container", p.what, p.probe, p.path)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources = %+v, want CPU and memory requests and a memory limit", c.Resources)
	}
	for _, m := range c.VolumeMounts {
		v := volumeNamed(pod.Volumes, m.Name)
		if v == nil {
			t.Errorf("mount %s has no volume", m.Name)
			continue
		}
		if v.Secret != nil && (m.SubPath != "" || !m.ReadOnly) {
			t.Errorf("Secret mount %s: subPath %q, read-only %v; want the whole Secret, read-only, so a rotation reaches the pod", m.Name, m.SubPath, m.ReadOnly)
		}
	}
	if m := mountAt(c.VolumeMounts, "/data"); m == nil || volumeNamed(pod.Volumes, m.Name).PersistentVolumeClaim == nil {
		t.Error("/data is not on a persistent volume claim")
	}
	for _, a := range c.Args {
		if dir, ok := strings.CutPrefix(a, "--repos="); ok && !strings.HasPrefix(dir, "/data/") {
			t.Errorf("--repos=%s is not on the /data volume", dir)
		}
		for _, file := range []string{"--tokens-file=", "--fetch-token-keys-file=", "--credentials="} {
			if path, ok := strings.CutPrefix(a, file); ok {
				if m := mountAt(c.VolumeMounts, filepath.Dir(path)); m == nil || volumeNamed(pod.Volumes, m.Name).Secret == nil {
					t.Errorf("%s: no Secret is mounted at %s", a, filepath.Dir(path))
				}
			}
		}
	}
	for _, claim := range r.claims {
		if v := volumeNamed(pod.Volumes, "data"); v.PersistentVolumeClaim.ClaimName != claim.Name {
			t.Errorf("the chart makes claim %s but the pod mounts %s", claim.Name, v.PersistentVolumeClaim.ClaimName)
		}
	}
}

// checkSelectors checks that each selector selects what it is for: the
// StatefulSets their pods, the Services and the PDB the server's pods, the
// ServiceMonitor exactly one Service with the port it names.
func checkSelectors(t *testing.T, r rendered) {
	t.Helper()
	server := r.server(t)
	podLabels := labels.Set(server.Spec.Template.Labels)
	for _, s := range r.statefulSets {
		sel, err := metav1.LabelSelectorAsSelector(s.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(s.Spec.Template.Labels)) {
			t.Errorf("StatefulSet %s: selector %v does not match its pods' labels %v (%v)", s.Name, s.Spec.Selector, s.Spec.Template.Labels, err)
		}
		if sel != nil && s != server && sel.Matches(podLabels) {
			t.Errorf("StatefulSet %s selects the server's pods", s.Name)
		}
		if s.Spec.ServiceName == "" || serviceNamed(r.services, s.Spec.ServiceName) == nil {
			t.Errorf("StatefulSet %s: governing Service %q is not rendered", s.Name, s.Spec.ServiceName)
		}
	}
	for _, svc := range r.services {
		if len(svc.Spec.Selector) == 0 {
			t.Errorf("Service %s selects nothing", svc.Name)
		}
		target := map[string]*appsv1.StatefulSet{}
		for _, s := range r.statefulSets {
			if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(s.Spec.Template.Labels)) {
				target[s.Name] = s
			}
		}
		if len(target) != 1 {
			t.Errorf("Service %s selects the pods of %d StatefulSets, want 1", svc.Name, len(target))
			continue
		}
		for _, s := range target {
			names := map[string]bool{}
			for _, p := range s.Spec.Template.Spec.Containers[0].Ports {
				names[p.Name] = true
			}
			for _, p := range svc.Spec.Ports {
				if !names[p.TargetPort.String()] {
					t.Errorf("Service %s: target port %s is no port of %s", svc.Name, p.TargetPort.String(), s.Name)
				}
			}
		}
	}
	for _, pdb := range r.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(podLabels) {
			t.Errorf("PDB %s does not select the server's pods (%v)", pdb.Name, err)
		}
	}
	for _, m := range r.monitors {
		sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		var picked []*corev1.Service
		for _, svc := range r.services {
			if sel.Matches(labels.Set(svc.Labels)) {
				picked = append(picked, svc)
			}
		}
		if len(picked) != 1 {
			t.Errorf("ServiceMonitor selects %d Services, want 1 (else every pod is scraped more than once)", len(picked))
			continue
		}
		for _, e := range m.Spec.Endpoints {
			if !slices.ContainsFunc(picked[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
				t.Errorf("ServiceMonitor endpoint port %q is no port of Service %s", e.Port, picked[0].Name)
			}
		}
	}
}

// TestHelmRefuses checks the combinations the chart must refuse to render,
// each with a message that says what to do.
func TestHelmRefuses(t *testing.T) {
	allOn := "ci/all-on-values.yaml"
	for _, tc := range []struct {
		values string
		set    []string
		want   string
	}{
		{allOn, []string{"persistence.accessModes={ReadWriteOnce}"}, "must hold ReadWriteMany"},
		{allOn, []string{"redis.existingSecret="}, "needs one Redis for all"},
		{allOn, []string{"fetchTokenKeys.existingSecret="}, "needs fetchTokenKeys.existingSecret"},
		{allOn, []string{"tokens.existingSecret="}, "needs tokens.existingSecret"},
		{"", []string{"replicas=2", "persistence.accessModes={ReadWriteMany}"}, "needs one Redis for all"},
		{"", []string{"redis.existingSecret=r", "redis.standalone.enabled=true"}, "not both"},
		{"", []string{"terminationGraceMarginSeconds=0"}, "must be at least 1"},
	} {
		out, err := helmTemplate(t, tc.values, tc.set...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("helm template %s --set %v: err %v, want a refusal saying %q; got:\n%.600s", tc.values, tc.set, err, tc.want, out)
		}
	}
}

func wantArg(t *testing.T, c *corev1.Container, arg string) {
	t.Helper()
	if !slices.Contains(c.Args, arg) {
		t.Errorf("args %q lack %q", c.Args, arg)
	}
}

func envNamed(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// wantSecretEnv checks that env comes from key of Secret name (any key when
// key is empty).
func wantSecretEnv(t *testing.T, c *corev1.Container, env, name, key string) {
	t.Helper()
	e := envNamed(c, env)
	if e == nil || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Errorf("env %s = %+v, want it from Secret %s", env, e, name)
		return
	}
	ref := e.ValueFrom.SecretKeyRef
	if ref.Name != name || (key != "" && ref.Key != key) {
		t.Errorf("env %s from Secret %s key %s, want %s key %s", env, ref.Name, ref.Key, name, cmp(key, "(any)"))
	}
}

func wantEnvValue(t *testing.T, c *corev1.Container, env, value string) {
	t.Helper()
	if e := envNamed(c, env); e == nil || e.Value != value {
		t.Errorf("env %s = %+v, want %q", env, e, value)
	}
}

func volumeNamed(vs []corev1.Volume, name string) *corev1.Volume {
	for i := range vs {
		if vs[i].Name == name {
			return &vs[i]
		}
	}
	return nil
}

func mountAt(ms []corev1.VolumeMount, path string) *corev1.VolumeMount {
	for i := range ms {
		if ms[i].MountPath == path {
			return &ms[i]
		}
	}
	return nil
}

func serviceNamed(ss []*corev1.Service, name string) *corev1.Service {
	for _, s := range ss {
		if s.Name == name {
			return s
		}
	}
	return nil
}
