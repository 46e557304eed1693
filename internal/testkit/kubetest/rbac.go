package kubetest

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
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
