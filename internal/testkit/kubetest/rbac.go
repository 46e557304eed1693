package kubetest

import (
	"context"
	"fmt"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DevGroup is the group Grant gives pods, configmaps and secrets (all
// verbs) and exec, attach and port-forward, in namespaces default and prod.
const DevGroup = "dev"

// Grant lets impersonator impersonate users and groups (what a
// kubernetes target's own account needs) and gives DevGroup its roles.
func (c *Cluster) Grant(ctx context.Context, impersonator string) error {
	rbac := c.Client.RbacV1()
	roles := []*rbacv1.ClusterRole{
		{ObjectMeta: metav1.ObjectMeta{Name: "impersonator"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"users", "groups"}, Verbs: []string{"impersonate"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "dev"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "configmaps", "secrets"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"pods/exec", "pods/attach", "pods/portforward"}, Verbs: []string{"get", "create"}}}},
	}
	for _, r := range roles {
		if _, err := rbac.ClusterRoles().Create(ctx, r, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("kubetest: cluster role %s: %w", r.Name, err)
		}
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "impersonator"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "impersonator"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: impersonator}}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kubetest: bind impersonator: %w", err)
	}
	for _, ns := range []string{"default", "prod"} {
		if _, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "dev"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "dev"},
			Subjects: []rbacv1.Subject{{Kind: "Group", Name: DevGroup}}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("kubetest: bind dev in %s: %w", ns, err)
		}
	}
	return nil
}

// ServiceAccountToken makes service account name in ns, lets it get and
// list pods there (and nothing else), and returns a token of it from the
// TokenRequest API: what a CI job's bearer token is.
func (c *Cluster) ServiceAccountToken(ctx context.Context, ns, name string) (string, error) {
	core, rbac := c.Client.CoreV1(), c.Client.RbacV1()
	if _, err := core.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("kubetest: service account %s/%s: %w", ns, name, err)
	}
	role := "read-pods-" + name
	if _, err := rbac.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: role}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("kubetest: role %s: %w", role, err)
	}
	if _, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("kubetest: bind %s: %w", role, err)
	}
	tr, err := core.ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("kubetest: token of %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}
